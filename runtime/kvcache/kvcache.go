// Package kvcache is the host bookkeeping of a paged KV cache: a pool of
// fixed-size blocks of token positions and, per sequence, the table of the
// blocks that hold its positions (vLLM's block manager, without the
// device memory, which the model owns). A sequence of n positions holds
// ceil(n/BlockSize) blocks; position p lives in slot
// Blocks[p/BlockSize]·BlockSize + p%BlockSize of every layer's K and V pool.
//
// Blocks are all alike, so memory never fragments: a request can be
// admitted exactly when enough blocks are free, and a finished or cancelled
// sequence gives its blocks back at once. Pool is safe for concurrent use.
package kvcache

import (
	"errors"
	"fmt"
	"sync"
)

// ErrNoBlocks is returned when the pool cannot hold what is asked.
var ErrNoBlocks = errors.New("kvcache: not enough free blocks")

// Pool hands out blocks of BlockSize positions.
type Pool struct {
	blockSize int
	mu        sync.Mutex
	free      []int32 // free block ids, a stack
	total     int
}

// NewPool returns a pool of n blocks of blockSize positions each.
func NewPool(n, blockSize int) (*Pool, error) {
	if n <= 0 || blockSize <= 0 {
		return nil, fmt.Errorf("kvcache: pool of %d blocks of %d positions", n, blockSize)
	}
	p := &Pool{blockSize: blockSize, free: make([]int32, n), total: n}
	for i := range p.free {
		p.free[i] = int32(n - 1 - i) // block 0 handed out first
	}
	return p, nil
}

// BlockSize is the positions per block.
func (p *Pool) BlockSize() int { return p.blockSize }

// Blocks is the pool's size in blocks.
func (p *Pool) Blocks() int { return p.total }

// Free is the number of free blocks.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// BlocksFor is the blocks n positions take.
func (p *Pool) BlocksFor(n int) int { return (n + p.blockSize - 1) / p.blockSize }

// Seq is one sequence's block table. Its zero value holds nothing.
type Seq struct {
	// Blocks are the block ids, in position order.
	Blocks []int32
	// Len is the positions written so far.
	Len int
}

// Cap is the positions the sequence's blocks can hold.
func (s *Seq) Cap(blockSize int) int { return len(s.Blocks) * blockSize }

// Slot is the pool slot of position pos.
func (s *Seq) Slot(pos, blockSize int) int {
	return int(s.Blocks[pos/blockSize])*blockSize + pos%blockSize
}

// Reserve grows s so that it holds at least n positions, all or nothing.
func (p *Pool) Reserve(s *Seq, n int) error {
	need := p.BlocksFor(n) - len(s.Blocks)
	if need <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if need > len(p.free) {
		return fmt.Errorf("%w: %d positions need %d more blocks, %d of %d free", ErrNoBlocks, n, need, len(p.free), p.total)
	}
	k := len(p.free) - need
	for i := len(p.free) - 1; i >= k; i-- {
		s.Blocks = append(s.Blocks, p.free[i])
	}
	p.free = p.free[:k]
	return nil
}

// Release returns all of s's blocks to the pool and empties s.
func (p *Pool) Release(s *Seq) {
	if len(s.Blocks) == 0 {
		s.Len = 0
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(s.Blocks) - 1; i >= 0; i-- {
		p.free = append(p.free, s.Blocks[i])
	}
	s.Blocks, s.Len = nil, 0
}
