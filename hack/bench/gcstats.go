package main

import (
	"runtime/metrics"
	"time"
)

// gcSnapshot is what the Go runtime reports about garbage collection.
type gcSnapshot struct {
	at             time.Time
	cycles, forced uint64
	gcCPU, allCPU  float64 // seconds
	liveHeap       uint64  // bytes marked live by the last cycle
}

func readGC() gcSnapshot {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/cycles/forced:gc-cycles"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(samples)
	u := func(i int) uint64 {
		if samples[i].Value.Kind() == metrics.KindUint64 {
			return samples[i].Value.Uint64()
		}
		return 0
	}
	f := func(i int) float64 {
		if samples[i].Value.Kind() == metrics.KindFloat64 {
			return samples[i].Value.Float64()
		}
		return 0
	}
	return gcSnapshot{at: time.Now(), cycles: u(0), forced: u(1), gcCPU: f(2), allCPU: f(3), liveHeap: u(4)}
}

// gcSummary is the garbage collector's activity between two snapshots;
// the bench's own runtime.GC calls between steps are left out of the rate.
type gcSummary struct {
	Seconds     float64
	Automatic   uint64  // cycles the runtime started itself
	GCShare     float64 // of the process's CPU time
	CPUPerCycle time.Duration
	LiveHeapMiB float64
}

func summarizeGC(a, b gcSnapshot) gcSummary {
	s := gcSummary{Seconds: b.at.Sub(a.at).Seconds(), LiveHeapMiB: float64(b.liveHeap) / (1 << 20)}
	cycles := b.cycles - a.cycles
	s.Automatic = cycles - (b.forced - a.forced)
	if cpu := b.allCPU - a.allCPU; cpu > 0 {
		s.GCShare = (b.gcCPU - a.gcCPU) / cpu
	}
	if cycles > 0 {
		s.CPUPerCycle = time.Duration((b.gcCPU - a.gcCPU) / float64(cycles) * float64(time.Second))
	}
	return s
}
