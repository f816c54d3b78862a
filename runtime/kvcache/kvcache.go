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
//
// # Prefix caching
//
// A full block can be published under a Key, the hash of its tokens and of
// every token before them (ChainKeys; vLLM's automatic prefix caching): a
// later sequence whose leading blocks have the same keys shares those
// blocks (Share) instead of computing them again. Blocks are counted by
// reference; a block no sequence holds stays cached, and counts as free,
// until a Reserve needs it: the least recently released go first. Only
// full blocks are shared, and a sharer starts writing after them, so no
// sequence ever writes a block another one reads.
package kvcache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
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
	free      []int32 // free block ids holding nothing cached, a stack
	total     int
	ref       []int32 // sequences holding each block
	key       []Key   // a published block's key
	keyed     []bool  // whether the block is published
	cached    map[Key]int32
	// idle lists the published blocks no sequence holds, least recently
	// released first; at[b] is b's element while it is there.
	idle *list.List
	at   []*list.Element
}

// Key identifies a full block by its tokens and every token before them.
type Key [sha256.Size]byte

// ChainKeys returns the keys of the full blocks of tokens, in order,
// continuing from the keys already in keys (the block after them is
// tokens[len(keys)·blockSize:]): key i hashes key i-1 and block i's ids.
func ChainKeys(keys []Key, tokens []int, blockSize int) []Key {
	buf := make([]byte, 0, sha256.Size+4*blockSize)
	for i := len(keys); (i+1)*blockSize <= len(tokens); i++ {
		buf = buf[:0]
		if i > 0 {
			buf = append(buf, keys[i-1][:]...)
		}
		for _, t := range tokens[i*blockSize : (i+1)*blockSize] {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(t))
		}
		keys = append(keys, sha256.Sum256(buf))
	}
	return keys
}

// NewPool returns a pool of n blocks of blockSize positions each.
func NewPool(n, blockSize int) (*Pool, error) {
	if n <= 0 || blockSize <= 0 {
		return nil, fmt.Errorf("kvcache: pool of %d blocks of %d positions", n, blockSize)
	}
	p := &Pool{blockSize: blockSize, free: make([]int32, n), total: n, ref: make([]int32, n), key: make([]Key, n),
		keyed: make([]bool, n), cached: map[Key]int32{}, idle: list.New(), at: make([]*list.Element, n)}
	for i := range p.free {
		p.free[i] = int32(n - 1 - i) // block 0 handed out first
	}
	return p, nil
}

// BlockSize is the positions per block.
func (p *Pool) BlockSize() int { return p.blockSize }

// Blocks is the pool's size in blocks.
func (p *Pool) Blocks() int { return p.total }

// Free is the number of blocks no sequence holds, cached ones included
// (a Reserve takes those when it needs them).
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free) + p.idle.Len()
}

// Cached is the number of published blocks no sequence holds.
func (p *Pool) Cached() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle.Len()
}

// BlocksFor is the blocks n positions take.
func (p *Pool) BlocksFor(n int) int { return (n + p.blockSize - 1) / p.blockSize }

// Seq is one sequence's block table. Its zero value holds nothing.
type Seq struct {
	// Blocks are the block ids, in position order.
	Blocks []int32
	// Len is the positions written so far that hold the sequence's
	// tokens; rows past it may hold stale ones (a draft's rejected
	// tokens, model.StepSeq.Draft, once the caller sets Len back), which
	// later steps write again before any row reads them.
	Len int
}

// Cap is the positions the sequence's blocks can hold.
func (s *Seq) Cap(blockSize int) int { return len(s.Blocks) * blockSize }

// Slot is the pool slot of position pos.
func (s *Seq) Slot(pos, blockSize int) int {
	return int(s.Blocks[pos/blockSize])*blockSize + pos%blockSize
}

// Reserve grows s so that it holds at least n positions, all or nothing:
// free blocks first, then cached ones no sequence holds, least recently
// released first (they are no longer cached then).
func (p *Pool) Reserve(s *Seq, n int) error {
	need := p.BlocksFor(n) - len(s.Blocks)
	if need <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if free := len(p.free) + p.idle.Len(); need > free {
		return fmt.Errorf("%w: %d positions need %d more blocks, %d of %d free", ErrNoBlocks, n, need, free, p.total)
	}
	for range need {
		var b int32
		if k := len(p.free); k > 0 {
			b, p.free = p.free[k-1], p.free[:k-1]
		} else {
			b = p.idle.Remove(p.idle.Front()).(int32)
			p.at[b] = nil
			delete(p.cached, p.key[b])
			p.keyed[b] = false
		}
		p.ref[b] = 1
		s.Blocks = append(s.Blocks, b)
	}
	return nil
}

// Release gives back all of s's blocks and empties s. A block no other
// sequence holds becomes free, or, published, stays cached: its last
// block first, so that a sequence's leading blocks, which more sequences
// share, are the last to go.
func (p *Pool) Release(s *Seq) {
	if len(s.Blocks) == 0 {
		s.Len = 0
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(s.Blocks) - 1; i >= 0; i-- {
		b := s.Blocks[i]
		if p.ref[b]--; p.ref[b] > 0 {
			continue
		}
		if p.keyed[b] {
			p.at[b] = p.idle.PushBack(b)
		} else {
			p.free = append(p.free, b)
		}
	}
	s.Blocks, s.Len = nil, 0
}

// Match returns how many of the leading keys are cached, and how many of
// those blocks no sequence holds (sharing them takes them from Free).
func (p *Pool) Match(keys []Key) (n, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		b, ok := p.cached[k]
		if !ok {
			break
		}
		n++
		if p.ref[b] == 0 {
			idle++
		}
	}
	return n, idle
}

// Share gives the empty sequence s the cached blocks of the leading keys,
// at most most of them, and sets s.Len to the positions they hold; it
// returns how many it gave.
func (p *Pool) Share(s *Seq, keys []Key, most int) int {
	if len(s.Blocks) != 0 {
		panic("kvcache: Share into a sequence that holds blocks")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys[:max(min(len(keys), most), 0)] {
		b, ok := p.cached[k]
		if !ok {
			break
		}
		if p.ref[b] == 0 {
			p.idle.Remove(p.at[b])
			p.at[b] = nil
		}
		p.ref[b]++
		s.Blocks = append(s.Blocks, b)
	}
	s.Len = len(s.Blocks) * p.blockSize
	return len(s.Blocks)
}

// Publish caches block i of s, whose positions are all written, under key
// k, unless a block with that key is cached already.
func (p *Pool) Publish(s *Seq, i int, k Key) {
	b := s.Blocks[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.cached[k]; ok || p.keyed[b] {
		return
	}
	p.cached[k], p.key[b], p.keyed[b] = b, k, true
}
