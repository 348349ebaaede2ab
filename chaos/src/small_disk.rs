//! A small disk under one deployment's Postgres tables, which a scenario can fill and free.
//!
//! A size-limited tmpfs is mounted outside the stack's data directory and registered as a
//! tablespace; the deployment's `flk` processes reach Postgres with a URL whose server options
//! make it their default tablespace, so every table and index of the deployment's schema lives
//! on it (and no other test's). [`SmallDisk::fill`] writes a ballast file until the filesystem
//! refuses (ENOSPC): Postgres then fails to extend a table or index, which is what a full disk
//! looks like to it. Its write-ahead log stays on the stack's own disk, so Postgres itself keeps
//! running, as it does when only a tablespace's volume fills. [`SmallDisk::free`] deletes the
//! ballast.
//!
//! Mounting needs root (CAP_SYS_ADMIN); the error says so. The machine the project's scripts
//! set up runs the tests as root.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use crate::deployment::Deployment;

/// A mounted tmpfs registered as a tablespace; [`SmallDisk::remove`] undoes both.
#[derive(Debug)]
pub struct SmallDisk {
    /// The mount point (also the tablespace's location).
    pub dir: PathBuf,
    /// The tablespace's name.
    pub tablespace: String,
    /// The file that fills the disk while the fault lasts.
    ballast: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size_mib` MiB and creates a tablespace on it for `deployment`.
    pub async fn create(deployment: &Deployment, size_mib: u64) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("flk-pgdisk-{}", deployment.id));
        std::fs::create_dir_all(&dir)?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(&dir))
        .context("mounting a tmpfs for the small disk needs root (CAP_SYS_ADMIN)")?;
        let tablespace = format!("{}_disk", deployment.id);
        let disk = SmallDisk {
            ballast: dir.join("ballast"),
            dir,
            tablespace,
        };
        // The server runs as `postgres` (infra/scripts/lib/postgres.sh) and must own its
        // tablespace directory.
        let created = match run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(&disk.dir))
        {
            Ok(()) => deployment
                .postgres()
                .await?
                .batch_execute(&format!(
                    "CREATE TABLESPACE {} LOCATION '{}'",
                    disk.tablespace,
                    disk.dir.display()
                ))
                .await
                .context("creating the small disk's tablespace"),
            Err(error) => Err(error),
        };
        if let Err(error) = created {
            disk.remove(deployment).await;
            return Err(error);
        }
        Ok(disk)
    }

    /// `url` with server options that make this disk the default tablespace.
    pub fn url_for(&self, url: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!(
            "{url}{separator}options=-c%20default_tablespace%3D{}",
            self.tablespace
        )
    }

    /// Writes the ballast until the disk is full; returns the bytes written.
    pub fn fill(&self) -> anyhow::Result<u64> {
        let mut file = std::fs::File::create(&self.ballast)?;
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => return Ok(written),
                Ok(count) => written += count as u64,
                Err(error) if error.kind() == std::io::ErrorKind::StorageFull => {
                    return Ok(written);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Deletes the ballast: the tables can grow again.
    pub fn free(&self) -> anyhow::Result<()> {
        std::fs::remove_file(&self.ballast).context("deleting the small disk's ballast")
    }

    /// Drops the tablespace (the deployment's schema must be dropped first:
    /// [`Deployment::cleanup`]), unmounts the disk and deletes its mount point. Best effort:
    /// what fails is logged to stderr, with the command that finishes the job.
    pub async fn remove(self, deployment: &Deployment) {
        let _ = std::fs::remove_file(&self.ballast);
        if let Ok(client) = deployment.postgres().await {
            let dropped = client
                .batch_execute(&format!("DROP TABLESPACE IF EXISTS {}", self.tablespace))
                .await;
            if let Err(error) = dropped {
                eprintln!(
                    "could not drop tablespace {}: {error}; drop it by hand (psql -c 'DROP \
                     TABLESPACE {}')",
                    self.tablespace, self.tablespace
                );
            }
        }
        if let Err(error) = run(Command::new("umount").arg(&self.dir)) {
            eprintln!(
                "could not unmount {}: {error:#}; run `umount {}`",
                self.dir.display(),
                self.dir.display()
            );
            return;
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
