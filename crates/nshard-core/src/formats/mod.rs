//! Parsers for model file formats NeuroShard understands.

pub mod safetensors;
