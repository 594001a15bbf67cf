//! Partition tables and LVM against the real tools: `sgdisk`/`sfdisk` write the tables and
//! `sfdisk --json` says where the partitions are; `pvcreate`/`vgcreate`/`lvcreate` write LVM2
//! metadata on loop devices and `lvs --segments` says where every extent is. `open_disk` must
//! agree with both.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{noisy_image, run, tool, tool_with_input, write_at};

use snapsentry_disk::source::{BlockSource, FileSource, MemSource, Slice};
use snapsentry_disk::table::read_table;
use snapsentry_disk::{Disk, open_disk};

const MIB: u64 = 1 << 20;

/// A [`noisy_image`] of `size` bytes partitioned by `sfdisk` with `script`.
fn partitioned(dir: &Path, name: &str, size: u64, script: &str) -> PathBuf {
    let path = noisy_image(dir, name, size);
    tool_with_input("sfdisk", &[path.to_str().unwrap()], script);
    path
}

/// `sfdisk --json` partitions: node → (start sector, sectors, type).
fn sfdisk_json(path: &Path) -> HashMap<u32, (u64, u64, String)> {
    let out = tool("sfdisk", &["--json", path.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let file = path.to_str().unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let number: u32 = node.strip_prefix(file).unwrap().parse().unwrap();
            (
                number,
                (
                    p["start"].as_u64().unwrap(),
                    p["size"].as_u64().unwrap(),
                    p["type"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn open(path: &Path) -> Disk {
    open_disk(Arc::new(FileSource::open(path).unwrap())).unwrap()
}

#[test]
fn gpt_matches_sfdisk_and_survives_a_lost_primary() {
    let dir = tempfile::tempdir().unwrap();
    let path = noisy_image(dir.path(), "gpt.img", 64 * MIB);
    let p = path.to_str().unwrap();
    tool(
        "sgdisk",
        &[
            "-n",
            "1:2048:+1M",
            "-t",
            "1:ef02", // BIOS boot: no filesystem, not listed
            "-n",
            "2:0:+8M",
            "-t",
            "2:8300",
            "-c",
            "2:root",
            "-n",
            "3:0:+8M",
            "-t",
            "3:8e00",
            "-n",
            "4:0:+4M",
            "-t",
            "4:0c01", // Microsoft reserved: not listed
            "-n",
            "5:0:+4M",
            "-t",
            "5:ef00",
            "-c",
            "5:EFI system",
            "-n",
            "7:0:+3M",
            "-t",
            "7:0700",
            p,
        ],
    );
    let want = sfdisk_json(&path);
    let disk = FileSource::open(&path).unwrap();
    let table = read_table(&disk).unwrap();
    assert_eq!(table.scheme, "gpt");
    let numbers: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [2, 3, 5, 7]);
    for part in &table.partitions {
        let (start, size, kind) = &want[&part.number];
        assert_eq!(part.start, start * 512, "partition {}", part.number);
        assert_eq!(part.size, size * 512, "partition {}", part.number);
        assert_eq!(&part.type_id, kind, "partition {}", part.number);
        assert!(part.error.is_none());
    }
    assert_eq!(table.partitions[0].name.as_deref(), Some("root"));
    assert_eq!(table.partitions[2].name.as_deref(), Some("EFI system"));

    // Overwrite the primary header: the backup at the last LBA takes over.
    write_at(&path, 512, &[0u8; 512]);
    let disk = FileSource::open(&path).unwrap();
    assert_eq!(read_table(&disk).unwrap(), table);
    // Corrupt one entry of the backup array too: nothing valid is left, and the protective MBR
    // says the disk is GPT, so this is an error rather than "no partitions".
    let backup_entries = 64 * MIB - 33 * 512;
    write_at(&path, backup_entries + 40, &[0xFF; 4]);
    let disk = FileSource::open(&path).unwrap();
    assert!(read_table(&disk).is_err());
    let opened = open(&path);
    assert_eq!(opened.volumes.len(), 1);
    assert!(
        opened.volumes[0]
            .info
            .error
            .as_deref()
            .unwrap()
            .contains("gpt")
    );
}

#[test]
fn partition_past_the_end_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = partitioned(
        dir.path(),
        "cut.img",
        32 * MIB,
        "label: gpt\nstart=2048, size=8192\nstart=10240, size=40960\n",
    );
    // Keep the first 16 MiB: partition 2 now ends past the end of the disk.
    let bytes = std::fs::read(&path).unwrap()[..(16 * MIB) as usize].to_vec();
    let disk = open_disk(Arc::new(MemSource::new(bytes))).unwrap();
    assert_eq!(disk.scheme, "gpt");
    assert_eq!(disk.volumes.len(), 2);
    let first = disk.volumes[0].info.error.as_deref().unwrap();
    assert_eq!(
        first, "no known filesystem",
        "partition 1 is still examined"
    );
    let err = disk.volumes[1].info.error.as_deref().unwrap();
    assert!(err.contains("past the end"), "{err}");
}

#[test]
fn mbr_with_extended_and_logical_partitions_matches_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let path = partitioned(
        dir.path(),
        "mbr.img",
        32 * MIB,
        "label: dos\n\
             start=2048, size=8192, type=83\n\
             start=10240, size=40960, type=5\n\
             start=12288, size=8192, type=83\n\
             start=22528, size=16384, type=82\n\
             start=51200, size=8192, type=7\n",
    );
    let want = sfdisk_json(&path);
    let disk = FileSource::open(&path).unwrap();
    let table = read_table(&disk).unwrap();
    assert_eq!(table.scheme, "mbr");
    let numbers: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
    assert_eq!(
        numbers,
        [1, 3, 5, 6],
        "the extended container (2) is not a volume"
    );
    for part in &table.partitions {
        let (start, size, kind) = &want[&part.number];
        assert_eq!(part.start, start * 512, "partition {}", part.number);
        assert_eq!(part.size, size * 512, "partition {}", part.number);
        assert_eq!(
            part.type_id,
            format!("{:#04x}", u8::from_str_radix(kind, 16).unwrap())
        );
    }
}

#[test]
fn whole_disk_without_a_table_is_one_volume() {
    let disk = open_disk(Arc::new(MemSource::new(vec![0u8; 1 << 20]))).unwrap();
    assert_eq!((disk.format, disk.scheme), ("raw", "none"));
    assert_eq!(disk.volumes.len(), 1);
    let v = &disk.volumes[0].info;
    assert_eq!(
        (v.id.as_str(), v.partition, v.scanned),
        ("disk", None, false)
    );
    assert!(v.error.is_some());
}

#[test]
fn encrypted_and_swap_volumes_are_reported_not_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let path = partitioned(
        dir.path(),
        "enc.img",
        64 * MIB,
        "label: gpt\nsize=20M\nsize=8M\nsize=8M\nsize=8M\n",
    );
    let table = read_table(&FileSource::open(&path).unwrap()).unwrap();
    let offset = |n: usize| table.partitions[n].start;
    // LUKS, made by cryptsetup on a file and copied into partition 1.
    let luks = dir.path().join("luks");
    std::fs::write(&luks, vec![0u8; (20 * MIB) as usize]).unwrap();
    tool_with_input(
        "cryptsetup",
        &[
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            "-",
            luks.to_str().unwrap(),
        ],
        "not-a-secret",
    );
    write_at(
        &path,
        offset(0),
        &std::fs::read(&luks).unwrap()[..MIB as usize],
    );
    // Swap, made by mkswap.
    let swap = dir.path().join("swap");
    std::fs::write(&swap, vec![0u8; (8 * MIB) as usize]).unwrap();
    tool("mkswap", &[swap.to_str().unwrap()]);
    write_at(&path, offset(1), &std::fs::read(&swap).unwrap()[..65_536]);
    // A BitLocker volume header (no Debian tool writes one): the signature at offset 3.
    let mut bitlocker = vec![0u8; 512];
    bitlocker[..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    bitlocker[3..11].copy_from_slice(b"-FVE-FS-");
    bitlocker[510..].copy_from_slice(&[0x55, 0xAA]);
    write_at(&path, offset(2), &bitlocker);
    write_at(&path, offset(3), &vec![0u8; MIB as usize]);

    let disk = open(&path);
    let got: Vec<(&str, Option<&str>, bool)> = disk
        .volumes
        .iter()
        .map(|v| {
            (
                v.info.id.as_str(),
                v.info.filesystem.as_deref(),
                v.info.scanned,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("p1", Some("luks"), false),
            ("p2", Some("swap"), false),
            ("p3", Some("bitlocker"), false),
            ("p4", None, false),
        ]
    );
    assert_eq!(
        disk.volumes[0].info.error.as_deref(),
        Some("encrypted volume (luks), not scanned")
    );
    assert_eq!(
        disk.volumes[2].info.error.as_deref(),
        Some("encrypted volume (bitlocker), not scanned")
    );
    let json = serde_json::to_value(&disk.volumes[0].info).unwrap();
    assert_eq!(json["partition"], 1);
    assert_eq!(json["scheme"], "gpt");
    assert_eq!(json["sizeBytes"], 20 * MIB);
}

/// Loop devices over windows of an image file, detached on drop.
struct Loops(Vec<String>);

impl Loops {
    fn attach(&mut self, file: &Path, offset: u64, size: u64) -> String {
        let dev = tool(
            "losetup",
            &[
                "--find",
                "--show",
                "--offset",
                &offset.to_string(),
                "--sizelimit",
                &size.to_string(),
                file.to_str().unwrap(),
            ],
        )
        .trim()
        .to_string();
        self.0.push(dev.clone());
        dev
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = Command::new("losetup").args(["--detach", dev]).status();
        }
    }
}

/// LVM commands confined to the loop devices of this test, with no udev, no backups, no
/// devices file: the host's LVM setup is neither read nor changed.
struct Lvm {
    conf_dir: tempfile::TempDir,
}

impl Lvm {
    fn new(devices: &[String]) -> Self {
        let conf_dir = tempfile::tempdir().unwrap();
        let accept: Vec<String> = devices.iter().map(|d| format!("\"a|^{d}$|\"")).collect();
        let conf = format!(
            "devices {{ filter = [ {}, \"r|.*|\" ] use_devicesfile = 0 obtain_device_list_from_udev = 0 }}\n\
             activation {{ udev_sync = 0 udev_rules = 0 }}\n\
             backup {{ backup = 0 archive = 0 }}\n\
             global {{ activation = 0 }}\n",
            accept.join(", ")
        );
        std::fs::write(conf_dir.path().join("lvm.conf"), conf).unwrap();
        Lvm { conf_dir }
    }

    /// `lvcreate` of the inactive LV `name`, then `args` (size, VG, PVs).
    fn lvcreate(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["lvcreate", "--activate", "n", "-y", "-n", name];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn run(&self, args: &[&str]) -> String {
        let dir = self.conf_dir.path().to_str().unwrap().to_string();
        run(Command::new(args[0]).args(&args[1..]).envs([
            ("LVM_SYSTEM_DIR", dir.as_str()),
            ("LVM_SUPPRESS_FD_WARNINGS", "1"),
        ]))
    }
}

#[test]
fn lvm_linear_volumes_map_like_lvs_says() {
    let dir = tempfile::tempdir().unwrap();
    let path = partitioned(
        dir.path(),
        "lvm.img",
        96 * MIB,
        "label: gpt\nsize=8M\nsize=40M\nsize=40M\n",
    );
    let table = read_table(&FileSource::open(&path).unwrap()).unwrap();
    let (p2, p3) = (&table.partitions[1], &table.partitions[2]);
    let mut loops = Loops(Vec::new());
    let dev2 = loops.attach(&path, p2.start, p2.size);
    let dev3 = loops.attach(&path, p3.start, p3.size);
    let lvm = Lvm::new(&[dev2.clone(), dev3.clone()]);
    let vg = format!("ssvg{}", std::process::id());
    lvm.run(&["pvcreate", "-ff", "-y", &dev2, &dev3]);
    lvm.run(&["vgcreate", "-s", "1M", &vg, &dev2, &dev3]);
    lvm.lvcreate("one", &["-L", "6M", &vg, &dev2]);
    lvm.lvcreate("two", &["-L", "5M", &vg, &dev2]);
    // `one` grows after `two` took the next extents: two segments on p2.
    lvm.run(&["lvextend", "-y", "-L", "+4M", &format!("{vg}/one"), &dev2]);
    lvm.lvcreate("striped", &["-i", "2", "-I", "64k", "-L", "4M", &vg]);
    // The rest of both PVs: segments on two PVs.
    lvm.lvcreate("span", &["-l", "100%FREE", &vg]);
    let segments = lvs_segments(&lvm, &vg);
    let pe_start: u64 = lvm
        .run(&[
            "pvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "pe_start",
            &dev2,
        ])
        .trim()
        .parse()
        .unwrap();
    drop(loops);

    // An LV is named after the partition holding its first extent.
    let home = |lv: &str| {
        let first = segments
            .iter()
            .find(|s| s["lv_name"] == lv && s["seg_start_pe"] == "0")
            .unwrap();
        let ranges = first["seg_pe_ranges"].as_str().unwrap();
        if ranges.starts_with(&format!("{dev2}:")) {
            "p2"
        } else {
            "p3"
        }
    };
    let disk = open(&path);
    let ids: Vec<&str> = disk.volumes.iter().map(|v| v.info.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "p1".to_string(),
            "p2".into(),
            "p3".into(),
            format!("p2/{vg}/one"),
            format!("p2/{vg}/two"),
            format!("{}/{vg}/striped", home("striped")),
            format!("{}/{vg}/span", home("span")),
        ]
    );
    assert_eq!(disk.volumes[1].info.filesystem.as_deref(), Some("lvm2"));
    let striped = &disk.volumes[5].info;
    assert!(
        striped.error.as_deref().unwrap().contains("striped over 2"),
        "{:?}",
        striped.error
    );

    // Every extent of every linear LV reads the bytes `lvs` says it is stored at.
    let image = Arc::new(FileSource::open(&path).unwrap());
    let pv_base = HashMap::from([(dev2.as_str(), p2.start), (dev3.as_str(), p3.start)]);
    let mut segments_of: HashMap<String, usize> = HashMap::new();
    for seg in &segments {
        let name = seg["lv_name"].as_str().unwrap();
        if seg["segtype"] != "linear" {
            continue;
        }
        *segments_of.entry(name.to_string()).or_default() += 1;
        let volume = disk
            .volumes
            .iter()
            .find(|v| v.info.lvm.as_ref().is_some_and(|l| l.lv == name))
            .unwrap();
        let lv_source = lv_source(&disk, &path, &volume.info.id);
        let start: u64 = seg["seg_start_pe"].as_str().unwrap().parse().unwrap();
        let (dev, range) = seg["seg_pe_ranges"]
            .as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap();
        let (first, last) = range.split_once('-').unwrap();
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        for i in 0..=(last - first) {
            let mut got = [0u8; 64];
            lv_source.read_at((start + i) * MIB, &mut got).unwrap();
            let mut want = [0u8; 64];
            image
                .read_at(pv_base[dev] + pe_start + (first + i) * MIB, &mut want)
                .unwrap();
            assert_eq!(got, want, "{name}: extent {}", start + i);
        }
    }
    assert_eq!(segments_of["one"], 2);
    assert_eq!(segments_of["span"], 2);
    assert_eq!(
        disk.volumes[3].info.size_bytes,
        10 * MIB,
        "one: 6 MiB + 4 MiB"
    );
}

/// The block source of the LV with volume id `id`, opened the way `open_disk` does, through the
/// public LVM API.
fn lv_source(disk: &Disk, path: &Path, id: &str) -> Arc<dyn BlockSource> {
    use snapsentry_disk::lvm::{VolumeGroup, read_pv};
    let image: Arc<dyn BlockSource> = Arc::new(FileSource::open(path).unwrap());
    let mut pvs = HashMap::new();
    let mut vg = None;
    for v in disk
        .volumes
        .iter()
        .filter(|v| v.info.filesystem.as_deref() == Some("lvm2"))
    {
        let pv: Arc<dyn BlockSource> =
            Arc::new(Slice::new(image.clone(), v.info.offset, v.info.size_bytes).unwrap());
        let label = read_pv(pv.as_ref()).unwrap().unwrap();
        vg = Some(VolumeGroup::parse(label.metadata.as_ref().unwrap()).unwrap());
        pvs.insert(label.uuid, pv);
    }
    let vg = vg.unwrap();
    let lv_name = id.rsplit('/').next().unwrap();
    let lv = vg.lvs.iter().find(|l| l.name == lv_name).unwrap();
    vg.open_lv(lv, &pvs).unwrap()
}

/// `lvs --segments` of `vg` as JSON rows (`lv_name`, `seg_start_pe`, `seg_pe_ranges`, `segtype`).
fn lvs_segments(lvm: &Lvm, vg: &str) -> Vec<serde_json::Value> {
    let report = lvm.run(&[
        "lvs",
        "--segments",
        "--reportformat",
        "json",
        "-o",
        "lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges,segtype",
        vg,
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    report["report"][0]["seg"]
        .as_array()
        .unwrap_or_else(|| panic!("unexpected lvs report: {report}"))
        .clone()
}

/// The whole stack on a tree built by the shared reference builder: qcow2 → GPT → LVM (an LV
/// in two segments) → ext4 → walk, compared file by file with the tree on the host.
#[test]
fn qcow2_gpt_lvm_ext4_end_to_end() {
    use common::{Checks, Features, assert_matches, build_tree};
    let tree = build_tree(Features {
        sparse: false,
        wide_times: false,
        big_dir_files: 300,
        ..Features::POSIX
    });
    let dir = tempfile::tempdir().unwrap();
    let path = partitioned(
        dir.path(),
        "stack.raw",
        128 * MIB,
        "label: gpt\nsize=100M, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n",
    );
    let p1 = read_table(&FileSource::open(&path).unwrap())
        .unwrap()
        .partitions[0]
        .clone();
    let mut loops = Loops(Vec::new());
    let dev = loops.attach(&path, p1.start, p1.size);
    let lvm = Lvm::new(std::slice::from_ref(&dev));
    let vg = format!("ssroot{}", std::process::id());
    lvm.run(&["pvcreate", "-ff", "-y", &dev]);
    lvm.run(&["vgcreate", "-s", "1M", &vg, &dev]);
    lvm.lvcreate("root", &["-L", "24M", &vg]);
    lvm.lvcreate("other", &["-L", "4M", &vg]);
    lvm.run(&["lvextend", "-y", "-L", "+24M", &format!("{vg}/root")]);
    let segments = lvs_segments(&lvm, &vg);
    let pe_start: u64 = lvm
        .run(&[
            "pvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "pe_start",
            &dev,
        ])
        .trim()
        .parse()
        .unwrap();
    drop(loops);

    // The filesystem, made on the host and written extent range by extent range where LVM put
    // the LV: no device-mapper needed.
    let fs_image = dir.path().join("root.ext4");
    std::fs::write(&fs_image, vec![0u8; (48 * MIB) as usize]).unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rootfs", "-d"])
        .arg(tree.path())
        .arg(&fs_image)
        .env("E2FSPROGS_FAKE_TIME", "1700000000"));
    let fs_bytes = std::fs::read(&fs_image).unwrap();
    let root_segments: Vec<_> = segments.iter().filter(|s| s["lv_name"] == "root").collect();
    assert_eq!(root_segments.len(), 2, "{segments:?}");
    for seg in root_segments {
        let start: u64 = seg["seg_start_pe"].as_str().unwrap().parse().unwrap();
        let range = seg["seg_pe_ranges"]
            .as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1;
        let (first, last) = range.split_once('-').unwrap();
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        let len = (last - first + 1) * MIB;
        let from = (start * MIB) as usize;
        write_at(
            &path,
            p1.start + pe_start + first * MIB,
            &fs_bytes[from..from + len as usize],
        );
    }
    let qcow2 = dir.path().join("stack.qcow2");
    tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-c",
            path.to_str().unwrap(),
            qcow2.to_str().unwrap(),
        ],
    );

    let disk = open(&qcow2);
    assert_eq!((disk.format, disk.scheme), ("qcow2", "gpt"));
    let root = disk
        .volumes
        .iter()
        .find(|v| v.info.id == format!("p1/{vg}/root"))
        .unwrap();
    assert_eq!(root.info.filesystem.as_deref(), Some("ext4"));
    assert_eq!(root.info.label.as_deref(), Some("rootfs"));
    assert_eq!(
        root.info.lvm,
        Some(snapsentry_disk::volume::LvmInfo {
            vg: vg.clone(),
            lv: "root".into()
        })
    );
    assert!(root.info.scanned, "{:?}", root.info.error);
    assert_matches(root.fs.as_deref().unwrap(), &tree, Checks::ALL, |p| {
        p == "/lost+found" || p.starts_with("/lost+found/")
    });
}

#[test]
fn a_valid_mbr_wins_over_a_stale_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let path = partitioned(
        dir.path(),
        "stale.img",
        16 * MIB,
        "label: gpt\nsize=4M\nsize=4M\n",
    );
    // Relabel as MBR but leave the GPT headers behind, as a careless conversion does.
    tool_with_input(
        "sfdisk",
        &["--wipe", "never", path.to_str().unwrap()],
        "label: dos\nstart=4096, size=8192, type=83\n",
    );
    let table = read_table(&FileSource::open(&path).unwrap()).unwrap();
    assert_eq!(table.scheme, "mbr");
    assert_eq!(table.partitions.len(), 1);
    assert_eq!(table.partitions[0].start, 4096 * 512);
}
