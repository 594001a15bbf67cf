//! A fake-ARM fleet whose disks are image files: [`upload_disks`] puts each image into Azurite as
//! a page blob and writes its read SAS URL where the fleet spec (documented on
//! [`crate::fake_arm::FakeArm::load_fleet`]) expects it. The local environment of `make demo`
//! (`tests/examples/local-cloud.rs`) loads its Azure fleet through it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::azurite::{Azurite, Error};

/// The Azurite container the disks go into.
pub const CONTAINER: &str = "disks";

/// Uploads the image of every managed disk in `spec` that names one (`"image": PATH` on an
/// `osDisk` or a `dataDisks` entry: a raw image or fixed VHD whose size is a multiple of 512) to
/// Azurite as the page blob `disks/<disk name>`, sparse, and replaces `image` with `sas`, a read
/// SAS URL valid for `valid_for`. Returns the bytes written.
pub fn upload_disks(
    azurite: &Azurite,
    spec: &mut Value,
    valid_for: Duration,
) -> Result<u64, Error> {
    azurite.create_container(CONTAINER)?;
    let expiry = SystemTime::now() + valid_for;
    let mut written = 0;
    let groups = spec["subscriptions"]
        .as_object_mut()
        .into_iter()
        .flat_map(|subs| subs.values_mut())
        .filter_map(|sub| sub["resourceGroups"].as_object_mut())
        .flat_map(|groups| groups.values_mut());
    for group in groups {
        let vms = group["vms"].as_array_mut().into_iter().flatten();
        for vm in vms {
            if let Some(os) = vm.get_mut("osDisk") {
                written += upload_one(azurite, os, expiry)?;
            }
            if let Some(data) = vm.get_mut("dataDisks").and_then(Value::as_array_mut) {
                for disk in data {
                    written += upload_one(azurite, disk, expiry)?;
                }
            }
        }
    }
    Ok(written)
}

/// Uploads one disk's image, if it names one.
fn upload_one(azurite: &Azurite, disk: &mut Value, expiry: SystemTime) -> Result<u64, Error> {
    let Some(disk) = disk.as_object_mut() else {
        return Ok(0);
    };
    let Some(image) = disk.remove("image") else {
        return Ok(0);
    };
    let image = PathBuf::from(image.as_str().unwrap_or_default());
    let name = disk
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("disk")
        .to_owned();
    let written = azurite.upload_page_blob(CONTAINER, &name, &image)?;
    let sas = azurite.read_sas_url(CONTAINER, &name, expiry);
    disk.insert("sas".into(), Value::String(sas));
    Ok(written)
}
