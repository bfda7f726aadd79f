//! Command recording. Ops append dispatches to one open compute pass of one command encoder;
//! nothing is submitted until a `read` needs the results (or the params arena is full), so
//! a forward step is one submission however many ops it has.
//!
//! Each dispatch's small parameter struct goes into a slot of one uniform "params arena"
//! buffer; the slots' bytes are collected here and written with one `write_buffer` just
//! before the submission (wgpu applies such writes before the submitted commands run, and
//! after every earlier submission, so the arena can be reused by the next batch).
//!
//! Host-to-device writes (`write`, `set_step`) go through a fresh buffer and a copy recorded
//! in the same encoder, so they stay in order with the dispatches around them.

use super::buffers::{buffer_with, max_binding};
use super::device::Gpu;
use crate::error::{Error, Result};

/// Bytes of the params arena: this many dispatches fit between two submissions.
const ARENA_BYTES: u64 = 1 << 20;

/// A storage buffer as one op binds it: the first `bytes` of `buffer`, at the binding
/// number that follows the previous one's, or at `binding` when given (a shader module
/// whose entry points use different sets of bindings: matmul_i8).
pub(crate) struct Bind<'a> {
    pub buffer: &'a ::wgpu::Buffer,
    pub bytes: u64,
    pub binding: Option<u32>,
}

impl<'a> Bind<'a> {
    pub fn new(buffer: &'a ::wgpu::Buffer, bytes: u64) -> Bind<'a> {
        Bind {
            buffer,
            bytes,
            binding: None,
        }
    }
    pub fn whole(buffer: &'a ::wgpu::Buffer) -> Bind<'a> {
        Bind::new(buffer, buffer.size())
    }
    /// The same at binding number `binding`.
    pub fn at(self, binding: u32) -> Bind<'a> {
        Bind {
            binding: Some(binding),
            ..self
        }
    }
}

pub(crate) struct Recorder {
    encoder: Option<::wgpu::CommandEncoder>,
    pass: Option<::wgpu::ComputePass<'static>>,
    arena: ::wgpu::Buffer,
    params: Vec<u8>,
    slot: u64,
}

impl Recorder {
    pub fn new(gpu: &Gpu) -> Result<Recorder> {
        let arena = gpu.scoped("allocating the params arena", || {
            gpu.device.create_buffer(&::wgpu::BufferDescriptor {
                label: Some("params arena"),
                size: ARENA_BYTES,
                usage: ::wgpu::BufferUsages::UNIFORM | ::wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let slot = (gpu.limits.min_uniform_buffer_offset_alignment as u64).max(32);
        Ok(Recorder {
            encoder: None,
            pass: None,
            arena,
            params: Vec::new(),
            slot,
        })
    }

    /// The open encoder, with no pass open on it.
    fn encoder(&mut self, gpu: &Gpu) -> &mut ::wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| {
            gpu.device
                .create_command_encoder(&::wgpu::CommandEncoderDescriptor {
                    label: Some("lamina step"),
                })
        })
    }

    fn pass(&mut self, gpu: &Gpu) -> &mut ::wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self
                .encoder(gpu)
                .begin_compute_pass(&::wgpu::ComputePassDescriptor {
                    label: Some("lamina ops"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().expect("pass was just opened")
    }

    /// Records one dispatch of `groups` workgroups: binding 0 is `params` (at most 32
    /// bytes), bindings 1.. are `bufs` in order (or at the numbers they name).
    pub fn dispatch(
        &mut self,
        gpu: &Gpu,
        pipeline: &::wgpu::ComputePipeline,
        params: &[u32],
        bufs: &[Bind<'_>],
        groups: u64,
    ) -> Result<()> {
        if groups == 0 {
            return Ok(());
        }
        let max_dim = gpu.limits.max_compute_workgroups_per_dimension as u64;
        let x = groups.min(max_dim);
        let y = groups.div_ceil(x);
        if y > max_dim {
            return Err(Error::backend(
                "wgpu",
                format!("{groups} workgroups is more than one dispatch can launch"),
            ));
        }
        let limit = max_binding(gpu);
        for b in bufs {
            if b.bytes > limit {
                return Err(Error::backend(
                    "wgpu",
                    format!(
                        "an op would bind {} bytes of one buffer, more than the device allows \
                         ({limit} bytes); process fewer tokens per step",
                        b.bytes
                    ),
                ));
            }
        }
        if self.params.len() as u64 + self.slot > ARENA_BYTES {
            self.submit(gpu)?;
        }
        let offset = self.params.len() as u64;
        let mut bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.resize(self.slot as usize, 0);
        self.params.extend_from_slice(&bytes);

        let mut entries = vec![::wgpu::BindGroupEntry {
            binding: 0,
            resource: ::wgpu::BindingResource::Buffer(::wgpu::BufferBinding {
                buffer: &self.arena,
                offset,
                size: ::wgpu::BufferSize::new(params.len().div_ceil(4) as u64 * 16),
            }),
        }];
        let mut binding = 0;
        for b in bufs {
            binding = b.binding.unwrap_or(binding + 1);
            let size = (b.bytes.max(4).div_ceil(4) * 4).min(b.buffer.size());
            entries.push(::wgpu::BindGroupEntry {
                binding,
                resource: ::wgpu::BindingResource::Buffer(::wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: 0,
                    size: ::wgpu::BufferSize::new(size),
                }),
            });
        }
        let group = gpu.device.create_bind_group(&::wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let pass = self.pass(gpu);
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x as u32, y as u32, 1);
        gpu.check()
    }

    /// Records a copy of `bytes` host bytes into `dst` at byte offset `offset`.
    pub fn upload(
        &mut self,
        gpu: &Gpu,
        dst: &::wgpu::Buffer,
        offset: u64,
        bytes: &[u8],
    ) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let src = buffer_with(gpu, "upload", bytes, ::wgpu::BufferUsages::COPY_SRC)?;
        let size = (bytes.len() as u64).div_ceil(4) * 4;
        self.encoder(gpu)
            .copy_buffer_to_buffer(&src, 0, dst, offset, size);
        gpu.check()
    }

    /// Submits everything recorded so far.
    pub fn submit(&mut self, gpu: &Gpu) -> Result<()> {
        self.pass = None;
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        if !self.params.is_empty() {
            gpu.queue.write_buffer(&self.arena, 0, &self.params);
            self.params.clear();
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.check()
    }

    /// Submits everything and returns the first `bytes` bytes of `src` once it has run.
    pub fn read(&mut self, gpu: &Gpu, src: &::wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.div_ceil(4) * 4;
        if size == 0 {
            self.submit(gpu)?;
            return Ok(Vec::new());
        }
        let staging = gpu.scoped("allocating a readback buffer", || {
            gpu.device.create_buffer(&::wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: ::wgpu::BufferUsages::MAP_READ | ::wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        self.encoder(gpu)
            .copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.submit(gpu)?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(::wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        gpu.device
            .poll(::wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::backend("wgpu", format!("waiting for the device: {e}")))?;
        gpu.check()?;
        rx.recv()
            .map_err(|_| Error::backend("wgpu", "readback never completed"))?
            .map_err(|e| Error::backend("wgpu", format!("mapping readback buffer: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::backend("wgpu", format!("reading back: {e}")))?;
            view[..bytes as usize].to_vec()
        };
        staging.unmap();
        Ok(out)
    }
}
