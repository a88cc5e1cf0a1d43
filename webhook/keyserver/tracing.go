package keyserver

import (
	"context"
	"net/http"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// Traces: with Options.TracerProvider set, every decision is a span,
// continuing the gateway's trace when its request carries a W3C
// traceparent. Without one nothing here runs: the wrappers check a nil
// tracer and go on. A span's attributes are the outcome's: front end, code,
// policy and the key's public identity, never a credential.

// tracerName is the instrumentation scope of the key server's spans.
const tracerName = "github.com/keyward/keyward/webhook/keyserver"

// Attributes of a decision's span.
const (
	AttrFrontend  = attribute.Key("keyward.frontend")
	AttrCode      = attribute.Key("keyward.code")
	AttrAccepted  = attribute.Key("keyward.accepted")
	AttrPolicy    = attribute.Key("keyward.policy")
	AttrNamespace = attribute.Key("keyward.namespace")
	AttrKeyName   = attribute.Key("keyward.key.name")
	AttrKeyID     = attribute.Key("keyward.key.id")
	AttrSubject   = attribute.Key("keyward.subject")
)

// traceContext is W3C Trace Context (traceparent, tracestate), what
// gateways forward; baggage is not read.
var traceContext = propagation.TraceContext{}

// startSpan starts the span of frontend's decision on r, a child of the
// trace r's traceparent names, and returns r with it in its context.
func (s *Server) startSpan(r *http.Request, frontend string) (*http.Request, trace.Span) {
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := s.tracer.Start(ctx, "keyward "+frontend, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(AttrFrontend.String(frontend)))
	return r.WithContext(ctx), span
}

// startCheckSpan starts the span of an ext_authz Check: a child of the
// caller's span when Envoy traces its ext_authz calls (gRPC metadata), else
// of the client's request's trace (its traceparent, which Envoy forwards in
// the CheckRequest's headers).
func (s *Server) startCheckSpan(ctx context.Context, req *authv3.CheckRequest) (context.Context, trace.Span) {
	parent := context.Background()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		parent = traceContext.Extract(parent, metadataCarrier(md))
	}
	if !trace.SpanContextFromContext(parent).IsValid() {
		parent = traceContext.Extract(parent, checkHeaders{req.GetAttributes().GetRequest().GetHttp()})
	}
	ctx = trace.ContextWithRemoteSpanContext(ctx, trace.SpanContextFromContext(parent))
	return s.tracer.Start(ctx, "keyward "+frontendExtAuthz, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(AttrFrontend.String(frontendExtAuthz)))
}

// endSpan sets the outcome's attributes on span and ends it.
func endSpan(span trace.Span, frontend string, o *outcome) {
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs, AttrCode.String(o.result), AttrAccepted.Bool(o.accepted))
	if !o.policy.IsZero() {
		attrs = append(attrs, AttrPolicy.String(policyLabel(o.policy)))
	}
	if id := o.key; id != (identity{}) {
		attrs = append(attrs, AttrNamespace.String(id.namespace), AttrKeyName.String(id.name),
			AttrKeyID.String(id.keyID), AttrSubject.String(id.subject))
	}
	span.SetAttributes(attrs...)
	if !o.accepted {
		// A refusal is the key server doing its job, but the trace should
		// show where the request stopped.
		span.SetStatus(codes.Error, frontend+" refused: "+o.result)
	}
	span.End()
}

// checkHeaders reads the original request's headers in a CheckRequest for
// the propagator: Envoy sends them lower-cased, in headers or (with
// encode_raw_headers) header_map.
type checkHeaders struct {
	h *authv3.AttributeContext_HttpRequest
}

func (c checkHeaders) Get(key string) string {
	if v, ok := c.h.GetHeaders()[key]; ok {
		return v
	}
	for _, hv := range c.h.GetHeaderMap().GetHeaders() {
		if hv.GetKey() == key {
			if raw := hv.GetRawValue(); len(raw) > 0 {
				return string(raw)
			}
			return hv.GetValue()
		}
	}
	return ""
}

func (checkHeaders) Set(string, string) {}
func (checkHeaders) Keys() []string     { return nil }

// metadataCarrier reads gRPC metadata (lower-cased keys) for the propagator.
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (metadataCarrier) Set(string, string) {}
func (metadataCarrier) Keys() []string     { return nil }
