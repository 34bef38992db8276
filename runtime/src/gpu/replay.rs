//! Replaying a program: host writes, one submission per pass, bounded read-backs.

use super::program::{padded, Prepared};
use super::{GpuError, GpuProgram, WAIT_LIMIT};
use netc_compiler::kernels::MIRROR_WIDTH;
use netc_compiler::schedule::TensorId;

impl GpuProgram {
    /// Records one prepared kernel's dispatch into a compute pass.
    pub(super) fn dispatch(
        &self,
        cp: &mut wgpu::ComputePass,
        pipeline: usize,
        bind_group: &wgpu::BindGroup,
        groups: [u32; 3],
    ) {
        cp.set_pipeline(&self.pipelines[pipeline]);
        cp.set_bind_group(0, bind_group, &[]);
        cp.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    /// Dispatches every prepared kernel over zero workgroups, which touches no memory. llvmpipe
    /// compiles a kernel's machine code at its first dispatch, not when the pipeline is made
    /// (seconds for the large matmuls on a cold shader cache); this moves that work here,
    /// before the first step is timed.
    pub(super) fn warm_up(&self) -> Result<(), GpuError> {
        if !self.gpu.cpu_adapter {
            return Ok(());
        }
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("netc warm-up"),
            });
        {
            let mut cp = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            for p in self.passes.iter().flatten() {
                if let Prepared::Dispatch {
                    pipeline,
                    bind_group,
                    ..
                } = p
                {
                    self.dispatch(&mut cp, *pipeline, bind_group, [0, 0, 0]);
                }
            }
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait()
    }

    /// Texture-mirror refreshes (buffer-to-texture copies) in each run of a pass.
    pub fn mirror_refreshes(&self, pass: usize) -> usize {
        self.passes[pass]
            .iter()
            .filter(|p| matches!(p, Prepared::Mirror { .. }))
            .count()
    }

    fn buffer(&self, t: TensorId) -> &wgpu::Buffer {
        &self.buffers[self.program.assignment[t]]
    }

    /// Fills every activation and gradient buffer with NaN, so a kernel that leaves an element
    /// unwritten is caught by the comparison tests.
    pub fn poison(&self) {
        use netc_compiler::schedule::Kind;
        let mut done = vec![false; self.buffers.len()];
        for (t, tensor) in self.program.tensors.iter().enumerate() {
            let b = self.program.assignment[t];
            if matches!(tensor.kind, Kind::Activation | Kind::Grad) && !done[b] {
                done[b] = true;
                let nan = vec![f32::NAN; self.program.buffers[b] as usize];
                self.gpu
                    .queue
                    .write_buffer(&self.buffers[b], 0, bytemuck::cast_slice(&nan));
            }
        }
    }

    /// Queues host data into a tensor (applied before the next submission).
    pub fn write(&self, t: TensorId, data: &[f32]) {
        debug_assert!(data.len() as u64 <= self.program.tensors[t].len);
        self.gpu
            .queue
            .write_buffer(self.buffer(t), 0, bytemuck::cast_slice(data));
    }

    pub fn write_u32(&self, t: TensorId, data: &[u32]) {
        self.gpu
            .queue
            .write_buffer(self.buffer(t), 0, bytemuck::cast_slice(data));
    }

    pub(super) fn encode(&self, encoder: &mut wgpu::CommandEncoder, prepared: &[Prepared]) {
        let mut i = 0;
        while i < prepared.len() {
            match &prepared[i] {
                Prepared::Dispatch { .. } => {
                    // Consecutive dispatches share one compute pass.
                    let mut cp = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    });
                    while let Some(Prepared::Dispatch {
                        pipeline,
                        bind_group,
                        groups,
                    }) = prepared.get(i)
                    {
                        self.dispatch(&mut cp, *pipeline, bind_group, *groups);
                        i += 1;
                    }
                }
                Prepared::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => {
                    encoder.copy_buffer_to_buffer(
                        &self.buffers[*src],
                        *src_offset,
                        &self.buffers[*dst],
                        *dst_offset,
                        *bytes,
                    );
                    i += 1;
                }
                Prepared::Zero { buf } => {
                    encoder.clear_buffer(&self.buffers[*buf], 0, None);
                    i += 1;
                }
                Prepared::Mirror { buf } => {
                    self.encode_mirror(encoder, *buf);
                    i += 1;
                }
            }
        }
    }

    /// Copies a buffer into its texture mirror: the full 4096-texel rows, then the rest.
    fn encode_mirror(&self, encoder: &mut wgpu::CommandEncoder, buf: usize) {
        let Some(texture) = &self.mirrors[buf] else {
            return;
        };
        let texels = padded(self.program.buffers[buf]) / 4;
        let full_rows = texels / MIRROR_WIDTH;
        let rest = texels % MIRROR_WIDTH;
        let row_bytes = (MIRROR_WIDTH * 16) as u32;
        let mut copy = |row: u64, width: u64, height: u64| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buffers[buf],
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: row * row_bytes as u64,
                        bytes_per_row: Some(row_bytes),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: row as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: height as u32,
                    depth_or_array_layers: 1,
                },
            );
        };
        if full_rows > 0 {
            copy(0, MIRROR_WIDTH, full_rows);
        }
        if rest > 0 {
            copy(full_rows, rest, 1);
        }
    }

    /// Runs one pass: one command buffer, one submission, no wait.
    pub fn run(&mut self, pass: usize) {
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(&self.program.passes[pass].name),
            });
        self.encode(&mut encoder, &self.passes[pass]);
        self.gpu.queue.submit([encoder.finish()]);
        self.counters.submissions += 1;
    }

    /// Waits for the device, then copies a tensor back to the host.
    pub fn read(&self, t: TensorId) -> Result<Vec<f32>, GpuError> {
        let len = self.program.tensors[t].len;
        let bytes = len * 4;
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(self.buffer(t), 0, &self.staging, 0, bytes);
        self.gpu.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        self.staging
            .map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
                let _ = tx.send(r);
            });
        self.gpu.wait()?;
        match rx.recv_timeout(WAIT_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Map(e.to_string())),
            Err(_) => return Err(GpuError::Timeout(WAIT_LIMIT)),
        }
        let out = {
            let view = self
                .staging
                .get_mapped_range(0..bytes)
                .map_err(|e| GpuError::Map(format!("{e:?}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        self.staging.unmap();
        Ok(out)
    }
}
