// Package publish turns quantization runs into what users download: it
// loads the model, runs the quantize driver for one recipe or a whole
// branch table (Quantize), writes each branch as a complete GPTQ
// checkpoint (spec §1-2: packed tensors streamed layer by layer, configs,
// tokenizer files, a model card) under a temporary name renamed when
// complete, the table's README with sizes measured from the files, and
// optionally a bare git repository with one git branch per branch, as the
// Hugging Face Hub lays out GPTQ branches.
//
// Checkpoints are GPTQ "v1" with symmetric zero points unless asked
// otherwise; Plan lists a checkpoint's tensors without writing it (sizes of
// the published table are tested against it). Nothing here does GPTQ math.
package publish
