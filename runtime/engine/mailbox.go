package engine

import (
	"context"
	"sync"
)

// mailbox delivers a request's events without ever blocking the engine: a
// goroutine moves them from an unbounded slice to the request's channel.
type mailbox struct {
	ctx    context.Context
	ch     chan Event
	mu     sync.Mutex
	buf    []Event
	closed bool
	notify chan struct{}
}

func newMailbox(ctx context.Context) *mailbox {
	m := &mailbox{ctx: ctx, ch: make(chan Event, 16), notify: make(chan struct{}, 1)}
	go m.pump()
	return m
}

func (m *mailbox) send(ev Event) {
	m.mu.Lock()
	m.buf = append(m.buf, ev)
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

func (m *mailbox) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// pump forwards events in order and closes the channel after the last.
// Once the request's context is done (a gone client stops reading) it
// drops what is left, so it never blocks forever.
func (m *mailbox) pump() {
	defer close(m.ch)
	for {
		select {
		case <-m.notify:
		case <-m.ctx.Done():
			return
		}
		for {
			m.mu.Lock()
			buf, closed := m.buf, m.closed
			m.buf = nil
			m.mu.Unlock()
			for _, ev := range buf {
				select {
				case m.ch <- ev:
				case <-m.ctx.Done():
					return
				}
			}
			if len(buf) == 0 {
				if closed {
					return
				}
				break
			}
		}
	}
}
