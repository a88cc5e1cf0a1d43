package operator

import (
	"context"
	"os"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/keyward/keyward/internal/tracing"
)

// tracingShutdownTimeout bounds the flush of the last spans at shutdown.
const tracingShutdownTimeout = 5 * time.Second

// setupTracing traces reconciles and the key server's decisions when the
// SDK's variables configure an OTLP endpoint (internal/tracing), and
// flushes the last spans when the manager stops. It returns the provider
// for the key server: nil, and no span anywhere, when none is configured.
func setupTracing(mgr ctrl.Manager) (trace.TracerProvider, error) {
	tp, err := tracing.FromEnv(context.Background(), os.Getenv)
	if err != nil || tp == nil {
		// A nil *TracerProvider must not become a non-nil interface.
		return nil, err
	}
	if err := mgr.Add(shutdownTracing{tp}); err != nil {
		return nil, err
	}
	tracing.SetProvider(tp)
	mgr.GetLogger().WithName("setup").Info("tracing: exporting spans by OTLP")
	return tp, nil
}

// shutdownTracing flushes and stops tp when the manager stops.
type shutdownTracing struct{ tp *sdktrace.TracerProvider }

func (s shutdownTracing) Start(ctx context.Context) error {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	return s.tp.Shutdown(sctx)
}
