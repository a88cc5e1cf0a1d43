// Package keymetrics exports per-key gauges for alerting, like cert-manager's
// certificate expiration metric. Labels name the object (kind, namespace,
// name), never key material.
package keymetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	expiration = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_key_expiration_timestamp_seconds",
		Help: "When the key expires (Unix seconds). Absent for keys that never expire. Alert on (this - time()) < 7d.",
	}, []string{"kind", "namespace", "name"})
	ready = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_key_ready",
		Help: "1 when the key's Ready condition is True, 0 otherwise.",
	}, []string{"kind", "namespace", "name"})
	nextRotation = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyward_key_next_rotation_timestamp_seconds",
		Help: "When the key's next scheduled rotation is due (Unix seconds). Absent without rotation.",
	}, []string{"kind", "namespace", "name"})
)

func init() {
	metrics.Registry.MustRegister(expiration, ready, nextRotation)
}

// Observe records a key's state after a reconcile.
func Observe(kind, namespace, name string, isReady bool, expiresAt, rotatesAt *time.Time) {
	l := prometheus.Labels{"kind": kind, "namespace": namespace, "name": name}
	setOrDelete(expiration, l, expiresAt)
	setOrDelete(nextRotation, l, rotatesAt)
	v := 0.0
	if isReady {
		v = 1
	}
	ready.With(l).Set(v)
}

// Forget removes a deleted key's series.
func Forget(kind, namespace, name string) {
	l := prometheus.Labels{"kind": kind, "namespace": namespace, "name": name}
	expiration.Delete(l)
	nextRotation.Delete(l)
	ready.Delete(l)
}

func setOrDelete(g *prometheus.GaugeVec, l prometheus.Labels, t *time.Time) {
	if t == nil {
		g.Delete(l)
		return
	}
	g.With(l).Set(float64(t.Unix()))
}
