//! What the two Kubernetes examples share: their command line, the demo
//! application, and the connection to the cluster.

use deploy_core::model::{AppSpec, ImageRef, Name, Namespace, Port, Release, Version};
use deploy_k8s::Cluster;

use crate::Error;

/// The image the Kubernetes examples run unless `DEPLOY_RS_EXAMPLE_IMAGE` names
/// another one: it starts and stays up without arguments, and it is small.
pub const DEFAULT_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The command line of the Kubernetes examples:
/// `[--dry-run] [--namespace NS] [--from VERSION] [--to VERSION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Print the plan and the manifests; touch no cluster.
    pub dry_run: bool,
    /// The namespace to deploy to (default `deploy-rs-example`).
    pub namespace: String,
    /// The version that serves now (default `1`).
    pub from: String,
    /// The version to roll out (default `2`).
    pub to: String,
}

impl Args {
    /// Parses `std::env::args()`.
    ///
    /// # Errors
    ///
    /// An unknown flag, or a flag without its value.
    pub fn parse() -> Result<Self, Error> {
        Self::parse_from(std::env::args().skip(1))
    }

    /// Parses these arguments (without the program name).
    ///
    /// # Errors
    ///
    /// An unknown flag, or a flag without its value.
    pub fn parse_from(args: impl IntoIterator<Item = String>) -> Result<Self, Error> {
        let mut parsed = Self {
            dry_run: false,
            namespace: "deploy-rs-example".to_owned(),
            from: "1".to_owned(),
            to: "2".to_owned(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
            match arg.as_str() {
                "--dry-run" => parsed.dry_run = true,
                "--namespace" => parsed.namespace = value("--namespace")?,
                "--from" => parsed.from = value("--from")?,
                "--to" => parsed.to = value("--to")?,
                other => {
                    return Err(format!(
                        "unknown argument {other}; usage: [--dry-run] [--namespace NS] [--from VERSION] [--to VERSION]"
                    )
                    .into());
                }
            }
        }
        Ok(parsed)
    }

    /// The demo application, `web` in the chosen namespace, two replicas per track.
    ///
    /// # Errors
    ///
    /// A namespace that is not an RFC 1123 label, or a bad `DEPLOY_RS_EXAMPLE_IMAGE`.
    pub fn spec(&self) -> Result<AppSpec, Error> {
        Ok(AppSpec::new(Namespace::new(&self.namespace)?, Name::new("web")?, image()?)
            .port(Port::tcp("http", 8080)?)
            .replicas(4))
    }

    /// The release that serves now and the one to roll out; both run the example's
    /// image, told apart by their version label.
    ///
    /// # Errors
    ///
    /// A version that is not a valid label value.
    pub fn releases(&self) -> Result<(Release, Release), Error> {
        let release = |v: &str| -> Result<Release, Error> {
            Ok(Release::new(Version::new(v)?, image()?).change_cause(format!("deploy-rs example: version {v}")))
        };
        Ok((release(&self.from)?, release(&self.to)?))
    }
}

fn image() -> Result<ImageRef, Error> {
    let image = std::env::var("DEPLOY_RS_EXAMPLE_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    Ok(ImageRef::parse(&image)?)
}

/// Connects to the cluster `KUBECONFIG` (or the in-cluster service account) names.
///
/// # Errors
///
/// No kubeconfig and not in a cluster, with a message that says how to get one.
pub async fn connect() -> Result<Cluster, Error> {
    let client = deploy_k8s::kube::Client::try_default().await.map_err(|e| {
        format!(
            "this example needs a Kubernetes cluster ({e}); point KUBECONFIG at one \
             (kind or k3d work, see docs/kubernetes.md), or run it with --dry-run"
        )
    })?;
    Ok(Cluster::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_rejects_unknown_ones() {
        let args = Args::parse_from(["--dry-run", "--to", "3"].map(String::from)).unwrap();
        assert!(args.dry_run);
        assert_eq!((args.from.as_str(), args.to.as_str()), ("1", "3"));
        assert!(Args::parse_from(["--to"].map(String::from)).is_err());
        assert!(Args::parse_from(["--bogus"].map(String::from)).is_err());
    }
}
