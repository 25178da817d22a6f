package forward

// NewBenchGate is an open gate in front of a fan-out with no viewers, for benchmarks; held
// makes it pass packets as after a pause (sequence numbers shifted).
func NewBenchGate(held bool) interface{ Forward([]byte) } {
	f := &Fanout{}
	f.add(&Output{w: benchDiscard{}})
	g := &audioGate{f: f}
	g.open.Store(true)
	if held {
		g.held = 5
	}
	return g
}

type benchDiscard struct{}

func (benchDiscard) Write(b []byte) (int, error) { return len(b), nil }

// BindForTest binds t to out for the viewer's sender as Bind does once pion negotiated.
func (t *Track) BindForTest(sender string, out *Output) error { return t.bind(sender, out) }

// StartForTest starts a bound video output as the viewer's connected transport does.
func (t *Track) StartForTest() bool {
	t.mu.Lock()
	f, o := t.fan, t.out
	t.mu.Unlock()
	return f.start(o)
}
