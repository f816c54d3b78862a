package kvcache

import (
	"errors"
	"slices"
	"testing"
)

func TestPool(t *testing.T) {
	p, err := NewPool(5, 16)
	if err != nil {
		t.Fatal(err)
	}
	var a, b Seq
	if err := p.Reserve(&a, 33); err != nil { // 3 blocks
		t.Fatal(err)
	}
	if len(a.Blocks) != 3 || p.Free() != 2 || a.Cap(16) != 48 {
		t.Fatalf("a holds %v, %d free", a.Blocks, p.Free())
	}
	if got := a.Slot(17, 16); got != int(a.Blocks[1])*16+1 {
		t.Errorf("slot of position 17 = %d", got)
	}
	if err := p.Reserve(&b, 48); !errors.Is(err, ErrNoBlocks) {
		t.Fatalf("3 blocks from 2 free: %v, want ErrNoBlocks", err)
	}
	if len(b.Blocks) != 0 || p.Free() != 2 {
		t.Fatalf("a failed reserve took blocks: %v, %d free", b.Blocks, p.Free())
	}
	if err := p.Reserve(&a, 40); err != nil || len(a.Blocks) != 3 {
		t.Fatalf("reserve within capacity: %v, %v", err, a.Blocks)
	}
	p.Release(&a)
	if p.Free() != 5 || a.Blocks != nil {
		t.Fatalf("after release %d free", p.Free())
	}
	seen := map[int32]bool{}
	if err := p.Reserve(&b, 80); err != nil {
		t.Fatal(err)
	}
	for _, id := range b.Blocks {
		if seen[id] || id < 0 || id >= 5 {
			t.Fatalf("block %d handed out twice or out of range: %v", id, b.Blocks)
		}
		seen[id] = true
	}
	if _, err := NewPool(0, 16); err == nil {
		t.Error("an empty pool was accepted")
	}
}

// TestPrefixCache: published blocks outlive their sequence, are shared by
// a later one with the same leading tokens (and only those), count as free,
// and are taken back by Reserve least recently released first.
func TestPrefixCache(t *testing.T) {
	p, err := NewPool(6, 4)
	if err != nil {
		t.Fatal(err)
	}
	toks := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	keys := ChainKeys(nil, toks, 4)
	if len(keys) != 2 {
		t.Fatalf("%d keys for 10 tokens in blocks of 4, want 2", len(keys))
	}
	if more := ChainKeys(keys[:1], toks, 4); !slices.Equal(more, keys) {
		t.Error("ChainKeys continued from one key differs from the whole chain")
	}
	other := ChainKeys(nil, []int{1, 2, 3, 4, 5, 6, 7, 9}, 4)
	if other[0] != keys[0] || other[1] == keys[1] {
		t.Error("keys: a shared first block should match and a different second should not")
	}
	if late := ChainKeys(nil, []int{0, 5, 6, 7, 8}[1:], 4); late[0] == keys[1] {
		t.Error("a block's key does not depend on the blocks before it")
	}

	var a Seq
	if err := p.Reserve(&a, 10); err != nil { // 3 blocks
		t.Fatal(err)
	}
	a.Len = 10
	p.Publish(&a, 0, keys[0])
	p.Publish(&a, 1, keys[1])
	if n, idle := p.Match(keys); n != 2 || idle != 0 {
		t.Errorf("Match while held: %d cached, %d idle; want 2, 0", n, idle)
	}
	var b Seq
	if got := p.Share(&b, other, 8); got != 1 || b.Len != 4 || b.Blocks[0] != a.Blocks[0] {
		t.Fatalf("Share of a prefix differing in block 2: %d blocks %v, Len %d", got, b.Blocks, b.Len)
	}
	if p.Free() != 3 {
		t.Errorf("%d free with 3 blocks held (one shared), want 3", p.Free())
	}
	first, second := a.Blocks[0], a.Blocks[1]
	p.Release(&a)
	if p.Free() != 5 || p.Cached() != 1 {
		t.Errorf("after releasing a: %d free, %d cached; want 5, 1 (block 1 cached, block 0 still shared)", p.Free(), p.Cached())
	}
	p.Release(&b)
	if p.Free() != 6 || p.Cached() != 2 {
		t.Errorf("after releasing both: %d free, %d cached; want 6, 2", p.Free(), p.Cached())
	}
	var c Seq
	if got := p.Share(&c, keys, 1); got != 1 || c.Blocks[0] != first {
		t.Errorf("Share capped at 1: %d %v", got, c.Blocks)
	}
	p.Release(&c)
	// Four free blocks are taken first, then the cached ones: the least
	// recently released (block 1, released with a) before block 0.
	var d Seq
	if err := p.Reserve(&d, 20); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(d.Blocks, first) || !slices.Contains(d.Blocks, second) {
		t.Errorf("Reserve of 5 blocks took %v: want the cached block %d evicted, %d kept", d.Blocks, second, first)
	}
	if n, _ := p.Match(keys); n != 1 {
		t.Errorf("after eviction %d leading keys cached, want 1", n)
	}
	p.Release(&d)
	var e Seq
	if err := p.Reserve(&e, 24); err != nil || p.Cached() != 0 {
		t.Errorf("reserving the whole pool: %v, %d still cached", err, p.Cached())
	}
	if got := slices.Compact(slices.Sorted(slices.Values(e.Blocks))); len(got) != 6 {
		t.Errorf("the whole pool reserved as %v: a block handed out twice", e.Blocks)
	}
}
