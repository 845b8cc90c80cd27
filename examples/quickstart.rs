//! Quickstart: describe an application, apply an environment profile, validate it.
//!
//! Run with `cargo run -p deploy-examples --example quickstart`.

use deploy_core::model::{AppSpec, Environment, EnvironmentProfile, ImageRef, Name, Port, Probe};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = AppSpec::new(
        Name::new("checkout")?,
        Name::new("shop")?,
        ImageRef::parse("registry.example.com/shop/checkout:1.4.2")?,
    )
    .port(Port::tcp("http", 8080)?)
    .readiness(Probe::http("/ready", 8080));
    for environment in Environment::ALL {
        let spec = EnvironmentProfile::preset(environment).apply_to(spec.clone());
        spec.validate()?;
        println!(
            "{environment:<18} {} replicas, image {}, autoscaling {:?}",
            spec.replicas,
            spec.image,
            spec.autoscaling.as_ref().map(|a| (a.min_replicas, a.max_replicas))
        );
    }
    Ok(())
}
