//! Where images and trees live, spelled like skopeo's transports because users know them:
//! `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker://REF` (a bare `host/repo:tag` also means a
//! registry), `tar:FILE` (a filesystem tar: the imager's `tarballPath` as an output, a gzip, zstd
//! or xz compressed one too as a build source), `deb:FILE` (a Debian package's files, as a build
//! source), and directories (`dir:PATH`, or any path). In the paths of sources `{arch}` is
//! replaced by `amd64`/`arm64`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(String),
    Oci { dir: PathBuf, tag: Option<String> },
    OciArchive { file: PathBuf, tag: Option<String> },
    Tar(PathBuf),
    Deb(PathBuf),
    Registry(String),
}

impl Location {
    /// Parse a location given on the command line or in a definition. Relative paths are
    /// resolved against `base` (the definition directory, or the working directory).
    pub fn parse(s: &str, base: &Path) -> Result<Self> {
        let path = |p: &str| -> Result<PathBuf> {
            if p.is_empty() {
                return Err(Error::input(format!("`{s}` names no path")));
            }
            Ok(base.join(p))
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (p, tag) = split_tag(rest);
            return Ok(Location::Oci { dir: path(p)?, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (p, tag) = split_tag(rest);
            return Ok(Location::OciArchive {
                file: path(p)?,
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("tar:") {
            return Ok(Location::Tar(path(rest)?));
        }
        if let Some(rest) = s.strip_prefix("deb:") {
            return Ok(Location::Deb(path(rest)?));
        }
        if let Some(rest) = s.strip_prefix("dir:") {
            return Ok(Location::Dir(path(rest)?.to_string_lossy().into_owned()));
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            if rest.is_empty() {
                return Err(Error::input(format!("`{s}` names no image")));
            }
            return Ok(Location::Registry(rest.to_string()));
        }
        if s.is_empty() {
            return Err(Error::input("empty location"));
        }
        let looks_like_path = s.starts_with('/')
            || s.starts_with("./")
            || s.starts_with("../")
            || s.contains("{arch}")
            || base.join(s).exists()
            || !s.contains('/');
        if looks_like_path {
            Ok(Location::Dir(base.join(s).to_string_lossy().into_owned()))
        } else {
            Ok(Location::Registry(s.to_string()))
        }
    }

    /// A directory location with `{arch}` replaced.
    pub fn dir_for(template: &str, arch: &str) -> PathBuf {
        PathBuf::from(template.replace("{arch}", arch))
    }

    /// A file path with `{arch}` replaced.
    pub fn file_for(template: &Path, arch: &str) -> PathBuf {
        PathBuf::from(template.to_string_lossy().replace("{arch}", arch))
    }
}

/// `path[:tag]`: a tag is the part after the last `:` when it holds no `/`.
fn split_tag(s: &str) -> (&str, Option<String>) {
    match s.rsplit_once(':') {
        Some((p, t)) if !t.is_empty() && !t.contains('/') && !p.is_empty() => {
            (p, Some(t.to_string()))
        }
        _ => (s, None),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(d) => write!(f, "dir:{d}"),
            Location::Oci { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            Location::OciArchive { file, tag } => {
                write!(f, "oci-archive:{}", file.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            Location::Tar(p) => write!(f, "tar:{}", p.display()),
            Location::Deb(p) => write!(f, "deb:{}", p.display()),
            Location::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        let b = Path::new("/base");
        assert_eq!(
            Location::parse("oci:out:1.0", b).unwrap(),
            Location::Oci {
                dir: "/base/out".into(),
                tag: Some("1.0".into())
            }
        );
        assert_eq!(
            Location::parse("oci:/abs/out", b).unwrap(),
            Location::Oci {
                dir: "/abs/out".into(),
                tag: None
            }
        );
        assert_eq!(
            Location::parse("oci-archive:x.tar:v2", b).unwrap(),
            Location::OciArchive {
                file: "/base/x.tar".into(),
                tag: Some("v2".into())
            }
        );
        assert_eq!(
            Location::parse("tar:a.tar", b).unwrap(),
            Location::Tar("/base/a.tar".into())
        );
        assert_eq!(
            Location::parse("docker://r.io/a/b:1", b).unwrap(),
            Location::Registry("r.io/a/b:1".into())
        );
        assert_eq!(
            Location::parse("docker.io/tailscale/tailscale:v1@sha256:00", b).unwrap(),
            Location::Registry("docker.io/tailscale/tailscale:v1@sha256:00".into())
        );
        assert_eq!(
            Location::parse("/payload/{arch}", b).unwrap(),
            Location::Dir("/payload/{arch}".into())
        );
        assert_eq!(
            Location::parse("payload/{arch}", b).unwrap(),
            Location::Dir("/base/payload/{arch}".into())
        );
        assert!(Location::parse("oci:", b).is_err());
    }
}
