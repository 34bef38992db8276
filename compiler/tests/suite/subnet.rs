//! A part of a network cut out to run alone (`netc_compiler::subnet::cut`): a VAE's decoder
//! from its latent to its reconstruction, and the parts that cannot run alone refused.

use netc_compiler::subnet::cut;

fn net(src: &str) -> netc_compiler::ir::Network {
    netc_compiler::compile("m.net", src)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .networks
        .remove(0)
}

const VAE: &str = "net v {\n  input image: 784\n  input eps: 4\n  h = image -> dense(16) -> relu\n  mu = h -> dense(4)\n  logvar = h -> dense(4)\n  z = reparameterise(mu, logvar, eps)\n  recon = z -> dense(16) -> relu -> dense(784) -> sigmoid\n  loss = bce_sum(recon, image)\n  output loss\n}\n";

#[test]
fn the_decoder_is_the_part_from_the_latent_to_the_reconstruction() {
    let n = net(VAE);
    let d = cut(&n, "z", "recon").expect("a decoder");
    assert_eq!(d.inputs.len(), 1);
    assert_eq!(d.graph[d.inputs[0]].shape, vec![4]);
    assert_eq!(d.graph[d.outputs[0].1].shape, vec![784]);
    let names: Vec<&str> = d.param_specs().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "recon.weight",
            "recon.bias",
            "recon.dense2.weight",
            "recon.dense2.bias"
        ]
    );
    // The encoder's 784 x 16 weights are not in it.
    assert_eq!(d.totals().params, 4 * 16 + 16 + 16 * 784 + 784);
    assert_eq!(d.order.len(), d.graph.node_count());
}

#[test]
fn a_part_that_reads_another_input_or_not_the_latent_is_refused() {
    let n = net(VAE);
    let e = cut(&n, "z", "loss").expect_err("the loss reads the image");
    assert!(e.0.contains("input `image`"), "{e}");
    let e = cut(&n, "recon", "mu").expect_err("mu is before recon");
    assert!(e.0.contains("not computed from `recon`"), "{e}");
    let e = cut(&n, "zz", "recon").expect_err("no zz");
    assert!(e.0.contains("no layer `zz`"), "{e}");
}
