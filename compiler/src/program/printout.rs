//! A readable listing of a program, as `netc` prints it and the snapshot tests record it.

use super::{Command, Program};

impl Program {
    /// A readable listing of the schedule: buffers, then each pass's commands in order.
    pub fn printout(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} tensors in {} buffers ({} bytes; {} without reuse), {} kernels",
            self.tensors.len(),
            self.buffers.len(),
            self.buffer_bytes(),
            self.unplanned_bytes(),
            self.kernels.len()
        );
        for (i, t) in self.tensors.iter().enumerate() {
            let _ = writeln!(
                s,
                "  t{i} {} [{}] {:?} -> b{}",
                t.name, t.len, t.kind, self.assignment[i]
            );
        }
        for p in &self.passes {
            let _ = writeln!(s, "pass {}:", p.name);
            for c in &p.commands {
                let _ = match c {
                    Command::Dispatch {
                        kernel,
                        bindings,
                        label,
                    } => {
                        let k = &self.kernels[*kernel];
                        writeln!(
                            s,
                            "  {label}: {} {:?} groups {:?}",
                            k.name, bindings, k.groups
                        )
                    }
                    Command::Copy {
                        src,
                        src_offset,
                        dst,
                        dst_offset,
                        len,
                    } => {
                        writeln!(
                            s,
                            "  copy t{src}[{src_offset}..] -> t{dst}[{dst_offset}..] x{len}"
                        )
                    }
                    Command::Zero { dst } => writeln!(s, "  zero t{dst}"),
                };
            }
        }
        s
    }
}
