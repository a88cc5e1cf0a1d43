package keyserver

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// The gateway's trace: its traceparent, as nginx (opentelemetry module),
// Traefik or Envoy forward it.
const (
	gatewayTraceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
	gatewaySpanID     = "00f067aa0ba902b7"
	gatewayTraceparnt = "00-" + gatewayTraceID + "-" + gatewaySpanID + "-01"
)

// withTracing records the server's spans in memory.
func withTracing(exp *tracetest.InMemoryExporter) func(*Options) {
	return func(o *Options) {
		o.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	}
}

// spanText is everything a span says: its name, status, attributes and
// events, for the canary check.
func spanText(s tracetest.SpanStub) string {
	var b strings.Builder
	b.WriteString(s.Name + " " + s.Status.Description + " ")
	write := func(kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + " ")
		}
	}
	write(s.Attributes)
	for _, e := range s.Events {
		b.WriteString(e.Name + " ")
		write(e.Attributes)
	}
	write(s.Resource.Attributes())
	return b.String()
}

func attrs(s tracetest.SpanStub) map[attribute.Key]string {
	out := map[attribute.Key]string{}
	for _, kv := range s.Attributes {
		out[kv.Key] = kv.Value.Emit()
	}
	return out
}

// wantChildOfGateway fails unless s continues the gateway's trace.
func wantChildOfGateway(t *testing.T, s tracetest.SpanStub) {
	t.Helper()
	if got := s.SpanContext.TraceID().String(); got != gatewayTraceID {
		t.Fatalf("span %q is in trace %s, want the gateway's %s", s.Name, got, gatewayTraceID)
	}
	if got := s.Parent.SpanID().String(); got != gatewaySpanID || !s.Parent.IsRemote() {
		t.Fatalf("span %q has parent %s (remote %v), want the gateway's %s", s.Name, got, s.Parent.IsRemote(), gatewaySpanID)
	}
	if s.SpanKind != trace.SpanKindServer {
		t.Fatalf("span kind %v", s.SpanKind)
	}
}

// TestAttack64SpansOfHTTPDecisions: each decision is a span continuing the
// gateway's trace, naming the front end, code, policy and the key's public
// identity, and no part of any credential presented.
func TestAttack64SpansOfHTTPDecisions(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	f := newFixture(t, withTracing(exp), func(o *Options) { o.FailureLimit = 1 << 20 })
	key := f.apiKey("app")
	ak, sk := f.pair("pair")
	guess := guessFor(t, keyIDOf(t, key))
	traced := func(r *http.Request) *http.Request {
		r.Header.Set("Traceparent", gatewayTraceparnt)
		return r
	}
	wantStatus(t, "authz", f.do(traced(authzWith(key))), http.StatusOK)
	wantStatus(t, "authz, wrong secret", f.do(traced(authzWith(guess))), http.StatusUnauthorized)
	wantStatus(t, "verify", f.do(traced(verifyWith(key))), http.StatusOK)
	tok := f.token(traced(basicToken(ak, sk)))
	if tok.status != http.StatusOK {
		t.Fatalf("token: %d", tok.status)
	}
	wantStatus(t, "authz with the token", f.do(authzWith(tok.resp.Token)), http.StatusOK)

	spans := exp.GetSpans()
	if len(spans) != 5 {
		t.Fatalf("%d spans, want 5", len(spans))
	}
	for _, s := range spans[:4] {
		wantChildOfGateway(t, s)
	}
	if spans[4].Parent.IsValid() {
		t.Fatalf("a request without a traceparent got a parent: %v", spans[4].Parent)
	}
	ok := attrs(spans[0])
	for k, v := range map[attribute.Key]string{
		AttrFrontend: frontendAuthz, AttrCode: "VALID", AttrAccepted: "true",
		AttrNamespace: "team-a", AttrKeyName: "app", AttrKeyID: keyIDOf(t, key), AttrSubject: "app-subject",
	} {
		if ok[k] != v {
			t.Errorf("accepted span: %s=%q, want %q (all: %v)", k, ok[k], v, ok)
		}
	}
	refused := attrs(spans[1])
	if refused[AttrCode] != "NOT_FOUND" || refused[AttrAccepted] != "false" || refused[AttrKeyID] != "" {
		t.Errorf("refused span: %v", refused)
	}
	if spans[1].Status.Code.String() != "Error" {
		t.Errorf("refused span status %v", spans[1].Status)
	}
	if a := attrs(spans[3]); a[AttrFrontend] != frontendTokens || a[AttrKeyID] != ak {
		t.Errorf("token span: %v", a)
	}
	var all strings.Builder
	for _, s := range spans {
		all.WriteString(spanText(s) + "\n")
	}
	assertNoCanary(t, all.String(), secretPart(t, key), secretPart(t, guess), sk, tok.resp.Token)
}

// TestSpansOfExtAuthzChecks: a Check continues the trace of the client's
// request (its traceparent in the CheckRequest's headers) or, when Envoy
// traces its own call, of the call (gRPC metadata), which wins.
func TestSpansOfExtAuthzChecks(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	f := newFixture(t, withTracing(exp))
	key := f.apiKey("app")
	x := &extAuthz{s: f.s}
	check := func(ctx context.Context, hdr map[string]string) {
		t.Helper()
		if _, err := x.Check(ctx, envoyCheck("api.example.com", "GET", "/x", hdr, nil)); err != nil {
			t.Fatal(err)
		}
	}
	check(context.Background(), map[string]string{"authorization": "Bearer " + key, "traceparent": gatewayTraceparnt})
	check(context.Background(), map[string]string{"authorization": "Bearer nope", "traceparent": gatewayTraceparnt})
	const envoySpan = "b7ad6b7169203331"
	md := metadata.Pairs("traceparent", "00-"+gatewayTraceID+"-"+envoySpan+"-01")
	check(metadata.NewIncomingContext(context.Background(), md), map[string]string{"authorization": "Bearer " + key, "traceparent": gatewayTraceparnt})

	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	wantChildOfGateway(t, spans[0])
	wantChildOfGateway(t, spans[1])
	if a := attrs(spans[0]); a[AttrFrontend] != frontendExtAuthz || a[AttrCode] != "VALID" || a[AttrKeyID] != keyIDOf(t, key) {
		t.Errorf("accepted check: %v", a)
	}
	if a := attrs(spans[1]); a[AttrAccepted] != "false" || a[AttrKeyID] != "" {
		t.Errorf("refused check: %v", a)
	}
	if got := spans[2].Parent.SpanID().String(); got != envoySpan {
		t.Errorf("with Envoy's own span in the metadata the parent is %s, want %s", got, envoySpan)
	}
	var all strings.Builder
	for _, s := range spans {
		all.WriteString(spanText(s) + "\n")
	}
	assertNoCanary(t, all.String(), secretPart(t, key))
}

// TestTracingOffCostsNothing: without a TracerProvider the hot path
// allocates what it does with a no-op one's spans never started; with a
// provider it does trace (the test can fail).
func TestTracingOffCostsNothing(t *testing.T) {
	f := newCredFixture(t)
	r := hotRequests(f.apiKey)["nginx"]
	r.Header.Set("Traceparent", gatewayTraceparnt)
	allocs := func() float64 {
		w := &discardWriter{}
		return testing.AllocsPerRun(200, func() {
			if serveOnce(f.s.Handler(), r, w) != http.StatusOK {
				t.Fatal("not 200")
			}
		})
	}
	off := allocs()
	exp := tracetest.NewInMemoryExporter()
	f.s.tracer = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer(tracerName)
	on := allocs()
	t.Logf("allocations per accepted /v1/authz: %v untraced, %v traced", off, on)
	if len(exp.GetSpans()) == 0 || on <= off {
		t.Fatalf("tracing on: %d spans, %v allocations (off: %v)", len(exp.GetSpans()), on, off)
	}
	if off > 4 {
		t.Fatalf("untraced /v1/authz allocates %v times, more than the 4 it did before tracing", off)
	}
}
