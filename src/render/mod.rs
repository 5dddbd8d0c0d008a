/*!
Rendering: the documents made from a plan, namely libvirt's domain, pool and volume XML and the
cloud-init seed. Pure, like the model.
*/

pub mod domain_xml;
#[allow(
    clippy::expect_used,
    reason = "seed's yaml() serializes strings and string lists to JSON, which cannot fail"
)]
pub mod seed;
pub mod selftest;
pub mod table;
pub mod template;
