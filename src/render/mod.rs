/*!
Rendering: the documents made from a plan, namely libvirt's domain, pool and volume XML and the
cloud-init seed. Pure, like the model.
*/

pub mod domain_xml;
pub mod seed;
pub mod template;
