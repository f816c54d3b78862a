package kvcache

import (
	"errors"
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
