//! CUDA graphs for `Backend::record`: the first call with a key captures the stream's
//! launches, instantiates them and launches the graph; later calls launch the graph again.
//!
//! Replay is valid because every per-step value is read from device memory that `set_step`
//! writes before the replay (ids, positions; attention derives its key range from them), and
//! the forward pass keeps its buffers for the life of the recording. Anything that changes a
//! captured address (step buffers or scratch growing) clears the recordings.

use super::{drv, Cuda};
use crate::error::Result;
use cudarc::driver::result as dr;
use cudarc::driver::sys;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// An instantiated graph.
pub struct Graph {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
}

// SAFETY: graphs are used only under the backend's Mutex, one thread at a time.
unsafe impl Send for Graph {}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: both handles were created once and are destroyed once. A graph is only
        // dropped with the backend's context alive (the backend owns both).
        unsafe {
            if let Err(e) = dr::graph::exec_destroy(self.exec) {
                tracing::warn!("cuda: destroying a graph: {}", drv(e));
            }
            if let Err(e) = dr::graph::destroy(self.graph) {
                tracing::warn!("cuda: destroying a graph: {}", drv(e));
            }
        }
    }
}

/// Recorded steps by key.
#[derive(Default)]
pub struct Graphs {
    map: HashMap<u64, Graph>,
}

impl Graphs {
    pub fn clear(&mut self) {
        self.map.clear();
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Cuda {
    pub(crate) fn is_capturing(&self) -> bool {
        self.capturing.load(Ordering::Relaxed)
    }

    /// Forgets the recordings because a captured address is about to change. Refused while
    /// capturing: the graph being made would hold the old address.
    pub(crate) fn invalidate_graphs(&self, why: &str) -> Result<()> {
        if self.is_capturing() {
            return Err(self.err(format!(
                "{why} while recording a step; run the step once unrecorded first so buffers \
                 reach their size"
            )));
        }
        let mut g = self.lock(&self.graphs)?;
        if !g.is_empty() {
            tracing::debug!("cuda: {why}: dropping {} recorded step(s)", g.len());
            g.clear();
        }
        Ok(())
    }

    pub(crate) fn record_graph(
        &self,
        key: Option<u64>,
        f: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let Some(key) = key.filter(|_| !self.graphs_off) else {
            return f();
        };
        if self.is_capturing() {
            return Err(self.err("record called inside a recording"));
        }
        self.bind()?;
        let stream = self.stream.cu_stream();
        {
            let graphs = self.lock(&self.graphs)?;
            if let Some(g) = graphs.map.get(&key) {
                // SAFETY: exec is a live instantiated graph of this context.
                return unsafe { dr::graph::launch(g.exec, stream) }
                    .map_err(|e| self.err(format!("launching recorded step {key}: {}", drv(e))));
            }
        }
        // Relaxed mode: module loading (a kernel's first use) is allowed while capturing.
        // SAFETY: the stream is ours and not capturing.
        unsafe {
            dr::stream::begin_capture(
                stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED,
            )
        }
        .map_err(|e| self.err(format!("starting to record step {key}: {}", drv(e))))?;
        self.capturing.store(true, Ordering::Relaxed);
        let body = f();
        self.capturing.store(false, Ordering::Relaxed);
        // SAFETY: ends the capture begun above, whatever f returned.
        let ended = unsafe { dr::stream::end_capture(stream) };
        let graph = match (body, ended) {
            (Err(e), ended) => {
                if let Ok(g) = ended {
                    if !g.is_null() {
                        // SAFETY: the captured graph is discarded.
                        unsafe { dr::graph::destroy(g) }.ok();
                    }
                }
                return Err(e);
            }
            (Ok(()), Err(e)) => {
                return Err(self.err(format!(
                    "recording step {key} failed (an operation that cannot be captured?): {}",
                    drv(e)
                )))
            }
            (Ok(()), Ok(g)) if g.is_null() => {
                return Err(self.err(format!("recording step {key} captured nothing")))
            }
            (Ok(()), Ok(g)) => g,
        };
        // SAFETY: graph is a valid captured graph.
        let exec = match unsafe { dr::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) }
        {
            Ok(x) => x,
            Err(e) => {
                // SAFETY: discarded once.
                unsafe { dr::graph::destroy(graph) }.ok();
                return Err(self.err(format!("instantiating recorded step {key}: {}", drv(e))));
            }
        };
        let g = Graph { graph, exec };
        // SAFETY: exec is the live graph just instantiated.
        unsafe { dr::graph::launch(g.exec, stream) }
            .map_err(|e| self.err(format!("launching recorded step {key}: {}", drv(e))))?;
        self.lock(&self.graphs)?.map.insert(key, g);
        Ok(())
    }
}
