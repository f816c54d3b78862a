package gguf

import "fmt"

// PermuteQK reorders the rows of a Hugging Face q_proj or k_proj weight
// ([heads·headDim, in] row-major) into llama.cpp's layout for the llama
// architecture, as convert_hf_to_gguf.py's LlamaModel.permute does:
//
//	w.reshape(heads, 2, headDim/2, in).swapaxes(1, 2).reshape(heads·headDim, in)
//
// Transformers applies RoPE to the two halves of each head (rotate_half:
// dimension i pairs with i+headDim/2); llama.cpp's llama RoPE rotates
// adjacent pairs (2i, 2i+1). Row h·headDim + 2i + j of dst is row
// h·headDim + j·headDim/2 + i of src (i < headDim/2, j ∈ {0, 1}), so the
// attention scores, and every output, are unchanged. heads is the number of
// attention heads for q_proj and the number of key-value heads for k_proj.
// src and dst must not overlap; an error reports shapes that do not split
// into heads of even size.
func PermuteQK(dst, src []float32, rows, cols, heads int) error {
	return permuteRows(dst, src, rows, cols, heads, false)
}

// UnpermuteQK is the inverse of PermuteQK: it restores the Hugging Face row
// order of a llama.cpp attn_q or attn_k weight.
func UnpermuteQK(dst, src []float32, rows, cols, heads int) error {
	return permuteRows(dst, src, rows, cols, heads, true)
}

func permuteRows(dst, src []float32, rows, cols, heads int, inverse bool) error {
	if heads <= 0 || rows <= 0 || cols < 0 || rows%heads != 0 || (rows/heads)%2 != 0 {
		return fmt.Errorf("permute q/k rows: %d rows cannot be split into %d heads of even size", rows, heads)
	}
	if len(src) != rows*cols || len(dst) != rows*cols {
		return fmt.Errorf("permute q/k rows: %d and %d values, shape [%d %d] needs %d", len(dst), len(src), rows, cols, rows*cols)
	}
	hd := rows / heads
	half := hd / 2
	for h := range heads {
		for i := range half {
			for j := range 2 {
				llama := h*hd + 2*i + j // interleaved pairs (llama.cpp)
				hf := h*hd + j*half + i // two halves (transformers)
				to, from := llama, hf
				if inverse {
					to, from = hf, llama
				}
				copy(dst[to*cols:(to+1)*cols], src[from*cols:(from+1)*cols])
			}
		}
	}
	return nil
}
