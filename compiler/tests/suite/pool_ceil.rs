//! Pooling's `ceil=true` (Caffe's rounding, PyTorch's ceil_mode) from the DSL and from YAML:
//! the output sizes, the IR's description, and the located errors where it makes no sense.

use netc_compiler::compile;

/// The shape of layer `name` in network `t`.
fn shape_of(src: &str, file: &str, name: &str) -> Vec<u64> {
    let m = compile(file, src).unwrap_or_else(|d| panic!("{}", d.render()));
    let net = m.network("t").expect("network t");
    let id = net.find(name).expect("layer");
    net.node(id).shape.clone()
}

#[test]
fn ceil_rounds_the_output_size_up_in_the_dsl_and_yaml() {
    // ResNet-50's pool1: 3x3 stride 2 on 112 gives 56 (floor: 55).
    let dsl = "net t { input x: 2x112x111\n f = maxpool(k=3, s=2)\n c = x -> max_pool(kernel=3, stride=2, ceil_mode=true)\n a = x -> avgpool(k=3, s=2, pad=1, ceil=true)\n d = x -> avgpool(k=2, s=2, pad=1, ceil=true) }";
    assert_eq!(shape_of(dsl, "p.net", "f"), [2, 55, 55]);
    assert_eq!(shape_of(dsl, "p.net", "c"), [2, 56, 55]);
    // 112 + 2 - 3 = 111 over 2 rounds up to 56, + 1 (floor: 56); 110 over 2 is exact.
    assert_eq!(shape_of(dsl, "p.net", "a"), [2, 57, 56]);
    // Columns: 111 + 2 - 2 = 111 over 2, ceil gives 57, whose last window would start at
    // 112 = F + p, in the padding after the input, so it is dropped (56, as floor).
    assert_eq!(shape_of(dsl, "p.net", "d"), [2, 57, 56]);
    let yaml = r#"
networks:
  - name: t
    inputs: {x: 2x112x112}
    layers:
      - {name: p, op: maxpool, k: 3, s: 2, ceil: true}
      - {name: q, chain: "avgpool(k=3, s=2, ceil=true)"}
    outputs: {q: q}
"#;
    assert_eq!(shape_of(yaml, "p.yaml", "p"), [2, 56, 56]);
    assert_eq!(shape_of(yaml, "p.yaml", "q"), [2, 28, 28]);
    let m = compile("p.yaml", yaml).unwrap_or_else(|d| panic!("{}", d.render()));
    let printout = m.printout();
    assert!(
        printout.contains("maxpool[k=3, s=2, pad=valid, ceil]"),
        "{printout}"
    );
}

#[test]
fn ceil_where_it_makes_no_sense_is_a_located_error() {
    let src = "net t {\n input x: 2x8x8\n p = maxpool(k=3, s=2, pad=same, ceil=true)\n}";
    let e = compile("p.net", src).expect_err("an error").render();
    assert!(e.contains("`ceil=true` cannot go with `pad=same`"), "{e}");
    assert!(e.contains("p.net:3:"), "{e}");
    let src = "net t {\n input x: 2x2x2\n p = avgpool(k=3, s=2, ceil=true)\n}";
    let e = compile("p.net", src).expect_err("an error").render();
    assert!(e.contains("kernel 3 is larger than its input 2"), "{e}");
    assert!(e.contains("p.net:3:"), "{e}");
    let src = "net t {\n input x: 2x8x8\n p = avgpool(k=3, ceil=yes)\n}";
    let e = compile("p.net", src).expect_err("an error").render();
    assert!(e.contains("expected true or false"), "{e}");
}
