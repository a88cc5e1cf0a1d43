// Package tracing sets up OpenTelemetry tracing from the SDK's own
// environment variables, and traces reconciles.
//
// Tracing is on only when an OTLP endpoint is configured
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and
// OTEL_SDK_DISABLED is not true: otherwise there is no provider, and
// whoever traces (the key server, Reconciler) skips spans altogether. The
// exporters read the rest of their variables themselves (headers, TLS,
// timeout, OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL picks grpc or
// http/protobuf), as do the sampler (OTEL_TRACES_SAMPLER) and the batch
// processor (OTEL_BSP_*); OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// name the service ("keyward" by default).
package tracing

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// ServiceName is the service.name of Keyward's spans unless
// OTEL_SERVICE_NAME says otherwise.
const ServiceName = "keyward"

// Configured reports whether getenv configures OTLP trace export: an
// endpoint is set and the SDK is not disabled.
func Configured(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// FromEnv is a TracerProvider exporting by OTLP as getenv (os.Getenv)
// configures it, or nil when it configures none. The caller shuts it down.
func FromEnv(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if !Configured(getenv) {
		return nil, nil
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	// The exporters read their endpoint, headers, TLS and timeout from the
	// environment themselves.
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q is not supported for traces: use grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", ServiceName)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// provider traces reconciles; nil: not at all.
var provider atomic.Pointer[trace.TracerProvider]

// SetProvider makes tp the provider reconciles are traced with (nil: none),
// and the global one with W3C Trace Context, for libraries that trace.
func SetProvider(tp trace.TracerProvider) {
	if tp == nil {
		provider.Store(nil)
		return
	}
	provider.Store(&tp)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
}

// scope is the instrumentation scope of reconcile spans.
const scope = "github.com/keyward/keyward/internal/tracing"

// Reconciler traces every reconcile of controller's r as one span, named
// "reconcile <controller>", with the object's namespace and name; without
// a provider it calls r and nothing else.
func Reconciler(controller string, r reconcile.Reconciler) reconcile.Reconciler {
	return reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		tp := provider.Load()
		if tp == nil {
			return r.Reconcile(ctx, req)
		}
		ctx, span := (*tp).Tracer(scope).Start(ctx, "reconcile "+controller, trace.WithAttributes(
			attribute.String("keyward.controller", controller),
			attribute.String("k8s.namespace.name", req.Namespace),
			attribute.String("keyward.object.name", req.Name)))
		defer span.End()
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			// Reconcile errors carry no key material (they are logged and
			// put in conditions too).
			span.SetStatus(codes.Error, err.Error())
		}
		if res.RequeueAfter > 0 {
			span.SetAttributes(attribute.String("keyward.requeue_after", res.RequeueAfter.String()))
		}
		return res, err
	})
}
