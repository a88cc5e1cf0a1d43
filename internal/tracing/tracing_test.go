package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfiguredOnlyWithAnEndpointAndNotDisabled(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		want bool
	}{
		"nothing set":             {nil, false},
		"an endpoint":             {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		"a traces endpoint":       {map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		"the SDK disabled":        {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		"disabled=false":          {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, true},
		"the traces exporter off": {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		"only a service name":     {map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	}
	for name, c := range cases {
		if got := Configured(env(c.env)); got != c.want {
			t.Errorf("%s: Configured = %v, want %v", name, got, c.want)
		}
	}
}

// TestFromEnvExportsByOTLP: with an endpoint set, spans reach it (OTLP over
// HTTP, the default protocol); unset, there is no provider.
func TestFromEnvExportsByOTLP(t *testing.T) {
	ctx := context.Background()
	tp, err := FromEnv(ctx, env(nil))
	if tp != nil || err != nil {
		t.Fatalf("no endpoint: %v, %v", tp, err)
	}
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	tp, err = FromEnv(ctx, os.Getenv)
	if err != nil || tp == nil {
		t.Fatalf("FromEnv: %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(ctx, "a span")
	span.End()
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Fatal("the collector received no spans")
	}

	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if tp, err := FromEnv(ctx, os.Getenv); err != nil || tp == nil {
		t.Fatalf("grpc: %v, %v", tp, err)
	} else {
		_ = tp.Shutdown(ctx)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if _, err := FromEnv(ctx, os.Getenv); err == nil {
		t.Fatal("http/json was accepted")
	}
}

// TestReconcilerSpans: a reconcile is a span with its controller and
// object; without a provider the reconciler is only called.
func TestReconcilerSpans(t *testing.T) {
	calls := 0
	inner := reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
		calls++
		return reconcile.Result{}, errors.New("the hash Secret could not be written")
	})
	r := Reconciler("apikey", inner)
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "team-a", Name: "app"}}

	SetProvider(nil)
	if _, err := r.Reconcile(context.Background(), req); err == nil || calls != 1 {
		t.Fatalf("untraced: err %v, %d calls", err, calls)
	}

	exp := tracetest.NewInMemoryExporter()
	SetProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	t.Cleanup(func() { SetProvider(nil) })
	if _, err := r.Reconcile(context.Background(), req); err == nil || calls != 2 {
		t.Fatalf("traced: err %v, %d calls", err, calls)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "reconcile apikey" || spans[0].Status.Code.String() != "Error" {
		t.Fatalf("spans: %+v", spans)
	}
	got := map[string]string{}
	for _, kv := range spans[0].Attributes {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got["k8s.namespace.name"] != "team-a" || got["keyward.object.name"] != "app" || got["keyward.controller"] != "apikey" {
		t.Fatalf("attributes: %v", got)
	}
}
