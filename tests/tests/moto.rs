//! The moto harness against the real AWS SDK: a disk image uploaded as an EBS snapshot reads back
//! byte for byte with AWS's block size and checksums, volumes and snapshots made from it carry its
//! blocks, the fleet fixture builds what the operator inventories, and fault injection makes the SDK
//! see throttling and server errors.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ebs::config::Credentials;
use aws_sdk_ebs::config::retry::RetryConfig;
use aws_sdk_ebs::error::ProvideErrorMetadata;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use snapsentry_tests::Moto;
use snapsentry_tests::moto::{Error, Options, REGION};

const BLOCK_SIZE: usize = 512 * 1024;

/// The non-zero blocks of [`small_image`] and the byte each is filled with.
const WRITTEN_BLOCKS: [(usize, u8); 3] = [(1, 0xa1), (5, 0x5e), (6, 0x07)];

/// A 3.5 MiB raw image (the last block short) with three non-zero blocks; the rest reads as zeros.
fn small_image(dir: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let path = dir.join("small.raw");
    let size = 6 * BLOCK_SIZE + BLOCK_SIZE / 2;
    let file = File::create(&path)?;
    file.set_len(size as u64)?;
    let mut file = OpenOptions::new().write(true).open(&path)?;
    let mut contents = vec![0; size];
    for (index, byte) in WRITTEN_BLOCKS {
        // Not the whole block: the zeros around the data must come back too.
        let start = index * BLOCK_SIZE + 100;
        let end = (start + 200_000).min(size);
        contents[start..end].fill(byte);
        file.seek(SeekFrom::Start(start as u64))?;
        file.write_all(&contents[start..end])?;
    }
    contents.resize(7 * BLOCK_SIZE, 0);
    Ok((path, contents))
}

async fn sdk_config(moto: &Moto) -> SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .endpoint_url(moto.endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

fn ebs_client(config: &SdkConfig, retry: RetryConfig) -> aws_sdk_ebs::Client {
    aws_sdk_ebs::Client::from_conf(
        aws_sdk_ebs::config::Builder::from(config)
            .retry_config(retry)
            .build(),
    )
}

/// Index and token of every block of `snapshot_id`, all pages.
async fn list_blocks(ebs: &aws_sdk_ebs::Client, snapshot_id: &str) -> Result<Vec<(i32, String)>> {
    let mut blocks = Vec::new();
    let mut token = None;
    loop {
        let page = ebs
            .list_snapshot_blocks()
            .snapshot_id(snapshot_id)
            .set_next_token(token)
            .send()
            .await
            .with_context(|| format!("ListSnapshotBlocks {snapshot_id}"))?;
        ensure!(
            page.block_size() == Some(BLOCK_SIZE as i32),
            "block size {:?}, AWS reports bytes",
            page.block_size()
        );
        for block in page.blocks() {
            blocks.push((
                block.block_index().context("block index")?,
                block.block_token().context("block token")?.to_owned(),
            ));
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(blocks);
        }
    }
}

/// Reads every listed block of `snapshot_id`, checks each checksum, and compares with `image`.
async fn assert_snapshot_holds(
    ebs: &aws_sdk_ebs::Client,
    snapshot_id: &str,
    image: &[u8],
) -> Result<()> {
    let blocks = list_blocks(ebs, snapshot_id).await?;
    let indexes: Vec<i32> = blocks.iter().map(|(index, _)| *index).collect();
    let expected: Vec<i32> = WRITTEN_BLOCKS.iter().map(|(i, _)| *i as i32).collect();
    ensure!(
        indexes == expected,
        "{snapshot_id} lists blocks {indexes:?}"
    );
    for (index, token) in blocks {
        let block = ebs
            .get_snapshot_block()
            .snapshot_id(snapshot_id)
            .block_index(index)
            .block_token(token)
            .send()
            .await
            .with_context(|| format!("GetSnapshotBlock {snapshot_id} {index}"))?;
        let checksum = block.checksum().map(str::to_owned);
        let algorithm = block.checksum_algorithm().cloned();
        let data = block.block_data.collect().await?.into_bytes();
        let start = index as usize * BLOCK_SIZE;
        ensure!(
            data[..] == image[start..start + BLOCK_SIZE],
            "block {index} of {snapshot_id} differs from the image"
        );
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
        ensure!(
            checksum.as_deref() == Some(sha256.as_str()),
            "block {index}: x-amz-Checksum {checksum:?}, want {sha256}"
        );
        ensure!(
            algorithm == Some(aws_sdk_ebs::types::ChecksumAlgorithm::ChecksumAlgorithmSha256),
            "block {index}: checksum algorithm {algorithm:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn uploaded_image_reads_back_with_aws_block_size_and_checksums() -> Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let (path, image) = small_image(dir.path())?;
    let snapshot_id = moto.upload_snapshot(&path)?;
    let config = sdk_config(&moto).await;
    let ebs = ebs_client(&config, RetryConfig::disabled());
    assert_snapshot_holds(&ebs, &snapshot_id, &image).await?;

    // AWS pages at most MaxResults (>= 100) blocks; with more blocks than that, the pages must
    // join up without gaps or repeats.
    let big = dir.path().join("big.raw");
    let mut file = File::create(&big)?;
    for _ in 0..150 {
        file.write_all(&vec![0x42; BLOCK_SIZE])?;
    }
    drop(file);
    let big_snapshot = moto.upload_snapshot(&big)?;
    let first = ebs
        .list_snapshot_blocks()
        .snapshot_id(&big_snapshot)
        .max_results(100)
        .send()
        .await?;
    assert_eq!(first.blocks().len(), 100);
    let second = ebs
        .list_snapshot_blocks()
        .snapshot_id(&big_snapshot)
        .max_results(100)
        .set_next_token(first.next_token().map(str::to_owned))
        .send()
        .await?;
    assert_eq!(
        second.blocks().first().and_then(|b| b.block_index()),
        Some(100)
    );
    assert_eq!(second.blocks().len(), 50);
    assert_eq!(second.next_token(), None);
    Ok(())
}

#[tokio::test]
async fn volumes_and_snapshots_made_from_a_snapshot_carry_its_blocks() -> Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let (path, image) = small_image(dir.path())?;
    let uploaded = moto.upload_snapshot(&path)?;
    let config = sdk_config(&moto).await;
    let ebs = ebs_client(&config, RetryConfig::disabled());
    let ec2 = aws_sdk_ec2::Client::new(&config);

    // AWS lists no volume for a snapshot uploaded through the EBS direct API.
    let volumes = ec2.describe_volumes().send().await?;
    assert!(volumes.volumes().is_empty(), "{volumes:?}");

    let volume_id = ec2
        .create_volume()
        .snapshot_id(&uploaded)
        .availability_zone(format!("{REGION}a"))
        .send()
        .await?
        .volume_id
        .context("volume id")?;
    let image_id = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await?
        .images()
        .first()
        .and_then(|image| image.image_id.clone())
        .context("moto has no AMI")?;
    let instance_id = ec2
        .run_instances()
        .image_id(image_id)
        .min_count(1)
        .max_count(1)
        .placement(
            aws_sdk_ec2::types::Placement::builder()
                .availability_zone(format!("{REGION}a"))
                .build(),
        )
        .send()
        .await?
        .instances()
        .first()
        .and_then(|instance| instance.instance_id.clone())
        .context("no instance")?;
    ec2.attach_volume()
        .volume_id(&volume_id)
        .instance_id(&instance_id)
        .device("/dev/sdf")
        .send()
        .await?;

    let snapshots = ec2
        .create_snapshots()
        .instance_specification(
            aws_sdk_ec2::types::InstanceSpecification::builder()
                .instance_id(&instance_id)
                .build(),
        )
        .send()
        .await?;
    let mut of_volume = None;
    for snapshot in snapshots.snapshots() {
        let snapshot_id = snapshot.snapshot_id().context("snapshot id")?;
        if snapshot.volume_id() == Some(volume_id.as_str()) {
            of_volume = Some(snapshot_id.to_owned());
        } else {
            // The instance's own root volume is empty, and so is its snapshot.
            let blocks = list_blocks(&ebs, snapshot_id).await?;
            assert!(blocks.is_empty(), "root snapshot lists {blocks:?}");
        }
    }
    let of_volume = of_volume.context("CreateSnapshots made no snapshot of the volume")?;
    assert_snapshot_holds(&ebs, &of_volume, &image).await?;

    let single = ec2
        .create_snapshot()
        .volume_id(&volume_id)
        .send()
        .await?
        .snapshot_id
        .context("snapshot id")?;
    assert_snapshot_holds(&ebs, &single, &image).await?;
    let described = ec2
        .describe_snapshots()
        .snapshot_ids(&single)
        .send()
        .await?;
    let state = described
        .snapshots()
        .first()
        .and_then(|s| s.state().cloned());
    assert_eq!(state, Some(aws_sdk_ec2::types::SnapshotState::Completed));
    Ok(())
}

#[tokio::test]
async fn injected_faults_reach_the_sdk_and_are_counted() -> Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let (path, _) = small_image(dir.path())?;
    let snapshot_id = moto.upload_snapshot(&path)?;
    let config = sdk_config(&moto).await;
    let (index, token) = list_blocks(&ebs_client(&config, RetryConfig::disabled()), &snapshot_id)
        .await?
        .remove(0);
    let get = |ebs: aws_sdk_ebs::Client| {
        let (snapshot_id, token) = (snapshot_id.clone(), token.clone());
        async move {
            ebs.get_snapshot_block()
                .snapshot_id(snapshot_id)
                .block_index(index)
                .block_token(token)
                .send()
                .await
        }
    };

    moto.set_faults(&json!({"getSnapshotBlock": {"throttleEvery": 2}}))?;
    let no_retries = ebs_client(&config, RetryConfig::disabled());
    let mut throttled = 0;
    for _ in 0..6 {
        match get(no_retries.clone()).await {
            Ok(_) => {}
            Err(error) => {
                let service = error.as_service_error().context("not a service error")?;
                assert!(
                    service.is_request_throttled_exception(),
                    "want RequestThrottledException, got {:?}",
                    service.code()
                );
                assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(400));
                throttled += 1;
            }
        }
    }
    assert_eq!(throttled, 3);
    assert_eq!(
        moto.fault_counters()?["getSnapshotBlock"],
        json!({"calls": 6, "throttled": 3, "serverErrors": 0})
    );

    // The SDK's standard retry strategy classifies the error as retryable: every call succeeds
    // in the end, and the server saw the throttled attempts.
    moto.set_faults(&json!({"getSnapshotBlock": {"throttleEvery": 2}}))?;
    let retrying = ebs_client(
        &config,
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1)),
    );
    for _ in 0..4 {
        get(retrying.clone()).await?;
    }
    // Call 1 succeeds; calls 2, 4 and 6 are throttled and retried as 3, 5 and 7.
    assert_eq!(
        moto.fault_counters()?["getSnapshotBlock"],
        json!({"calls": 7, "throttled": 3, "serverErrors": 0})
    );

    moto.set_faults(
        &json!({"getSnapshotBlock": {"serverErrorEvery": 2, "serverErrorStatus": 503}}),
    )?;
    get(no_retries.clone()).await?;
    let error = get(no_retries.clone())
        .await
        .expect_err("every 2nd call fails");
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert_eq!(error.code(), Some("InternalServerException"));

    moto.reset_faults()?;
    for _ in 0..3 {
        get(no_retries.clone()).await?;
    }
    list_blocks(&no_retries, &snapshot_id).await?;
    assert_eq!(
        moto.fault_counters()?,
        json!({
            "getSnapshotBlock": {"calls": 3, "throttled": 0, "serverErrors": 0},
            "listSnapshotBlocks": {"calls": 1, "throttled": 0, "serverErrors": 0},
        })
    );
    Ok(())
}

#[tokio::test]
async fn fleet_builds_machines_volumes_databases_and_buckets() -> Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let (root, image) = small_image(dir.path())?;
    let data = dir.path().join("data.raw");
    File::create(&data)?.set_len(BLOCK_SIZE as u64)?;
    let fleet = moto.create_fleet(&json!({
        "machines": [
            {"name": "web-1", "images": [root, data], "tags": {"env": "prod"}, "exposed": true},
            {"name": "win-1", "platform": "windows", "images": [root]},
        ],
        "rds": [{"id": "orders", "engine": "postgres", "address": "orders.db.example.internal"}],
        "buckets": ["snapsentry-fleet-bucket"],
    }))?;
    let config = sdk_config(&moto).await;
    let ebs = ebs_client(&config, RetryConfig::disabled());
    let ec2 = aws_sdk_ec2::Client::new(&config);

    let web = &fleet["machines"]["web-1"];
    let web_id = web["instanceId"].as_str().context("instance id")?;
    let volumes = web["volumes"].as_array().context("volumes")?;
    assert_eq!(volumes.len(), 2, "{fleet}");
    assert_eq!(volumes[0]["root"], json!(true));
    assert!(web["publicIp"].is_string(), "{fleet}");
    assert_eq!(web["securityGroupId"], fleet["securityGroups"]["open"]);
    let win = &fleet["machines"]["win-1"];
    assert!(win["publicIp"].is_null(), "{fleet}");
    assert_eq!(win["securityGroupId"], fleet["securityGroups"]["closed"]);

    // What EC2 itself reports: every volume is one of the fleet's, attached to its machine.
    let described = ec2.describe_volumes().send().await?;
    assert_eq!(described.volumes().len(), 3, "{described:?}");
    let instance = ec2
        .describe_instances()
        .instance_ids(web_id)
        .send()
        .await?
        .reservations()
        .first()
        .and_then(|r| r.instances().first().cloned())
        .context("web-1 not described")?;
    let tag = |key: &str| {
        instance
            .tags()
            .iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(|tag| tag.value().map(str::to_owned))
    };
    assert_eq!(tag("Name").as_deref(), Some("web-1"));
    assert_eq!(tag("env").as_deref(), Some("prod"));
    let groups: Vec<_> = instance
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(groups, [fleet["securityGroups"]["open"].as_str().unwrap()]);

    // Snapshotting the root volume (as the operator does) yields the image's blocks.
    let root_volume = volumes[0]["volumeId"].as_str().context("volume id")?;
    let snapshot_id = ec2
        .create_snapshot()
        .volume_id(root_volume)
        .send()
        .await?
        .snapshot_id
        .context("snapshot id")?;
    assert_snapshot_holds(&ebs, &snapshot_id, &image).await?;

    let rds = aws_sdk_rds::Client::new(&config);
    let databases = rds.describe_db_instances().send().await?;
    let address = databases
        .db_instances()
        .first()
        .and_then(|db| db.endpoint())
        .and_then(|endpoint| endpoint.address());
    assert_eq!(address, Some("orders.db.example.internal"));
    assert_eq!(fleet["rds"]["orders"]["address"], json!(address));
    assert_eq!(fleet["buckets"], json!(["snapsentry-fleet-bucket"]));
    Ok(())
}

#[test]
fn a_missing_venv_names_the_toolchain_script() {
    let error = Moto::start_with(Options {
        venv: PathBuf::from("/nonexistent/snapsentry-venv"),
        ..Options::default()
    })
    .expect_err("no venv there");
    assert!(matches!(error, Error::MissingVenv { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("scripts/toolchain.sh"), "{message}");
    assert!(
        message.contains("/nonexistent/snapsentry-venv"),
        "{message}"
    );
}
