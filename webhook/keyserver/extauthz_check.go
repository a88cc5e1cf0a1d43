package keyserver

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/trace"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keyward/keyward/internal/keypolicy"
)

// Keys of the dynamic metadata an OK answer carries, which Envoy puts in
// the namespace envoy.filters.http.ext_authz for later filters (RBAC,
// rate limits, access logs).
const (
	MetadataSubject   = "subject"
	MetadataNamespace = "namespace"
	MetadataKeyID     = "key_id"
	MetadataPolicy    = "policy"
)

// Check's series, looked up once (metrics.go says why).
var (
	extAuthzLatency = latency.WithLabelValues(frontendExtAuthz)
	extAuthzCounts  = &resultCounters{frontend: frontendExtAuthz}
)

// Check answers Envoy's ext_authz: the decision /v1/authz makes (authorize),
// as a CheckResponse. Every answer is a CheckResponse, refusals included,
// never a gRPC error: Envoy applies failure_mode_allow to errors, and a
// refusal must not be turned into a pass by that setting.
func (x *extAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now() // latency is a measurement, not a decision: wall clock
	var span trace.Span
	if x.s.tracer != nil {
		ctx, span = x.s.startCheckSpan(ctx, req)
	}
	resp, o := x.s.check(ctx, req)
	extAuthzCounts.inc(o.result)
	extAuthzLatency.Observe(time.Since(start).Seconds())
	if span != nil {
		endSpan(span, frontendExtAuthz, &o)
	}
	x.s.recordDecision(frontendExtAuthz, &o, nil)
	return resp, nil
}

// check decides req and returns the answer and what the wrapper reports of
// it (outcome).
func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, outcome) {
	c := readCheckRequest(req, peerAddr(ctx), s.opts.TrustedProxies)
	if c.status != 0 {
		return deniedResponse(authzAnswer{status: c.status, reason: c.reason}), outcome{result: resultBadRequest, client: c.client}
	}
	cred, err := credentialFromHeader(c.header)
	if err != nil {
		return deniedResponse(authzAnswer{status: http.StatusBadRequest, reason: "bad request: " + err.Error()}),
			outcome{result: resultTwoCredentials, client: c.client}
	}
	a := s.authorize(ctx, authzRequest{
		cred: cred, orig: c.orig, client: c.client, policy: c.policy,
		narrowing: keypolicy.Narrowing{Scopes: c.scopes, Namespaces: c.namespaces},
	})
	if a.status != http.StatusOK {
		return deniedResponse(a), authzOutcome(&a, c.client)
	}
	return okResponse(a, c.forged), authzOutcome(&a, c.client)
}

// peerAddr is the gRPC caller's address (Envoy's), or the zero Addr.
func peerAddr(ctx context.Context) netip.Addr {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}
	}
	return parseHost(p.Addr.String())
}

// okResponse lets the request through with the identity headers set
// (replacing a client's of the same name) and every other header the client
// sent under X-Keyward-*, or an alias of one, removed; the key's RateLimit
// headers go to the client with the upstream's answer. A header with nothing
// to say (a key without groups, no policy) is removed rather than set empty,
// so that a client's value cannot survive however Envoy treats empty values.
func okResponse(a authzAnswer, forged []string) *authv3.CheckResponse {
	// One allocation for each kind of message, not one per header: Check
	// is the hot path.
	fields := identityHeaders(a)
	var (
		opts   [len(fields)]corev3.HeaderValueOption
		values [len(fields)]corev3.HeaderValue
	)
	ok := &authv3.OkHttpResponse{
		Headers:         make([]*corev3.HeaderValueOption, 0, len(fields)),
		HeadersToRemove: make([]string, 0, len(fields)+len(forged)),
	}
	var set [len(fields)]string
	n := 0
	for i, f := range fields {
		lower := identityHeaderNames[i]
		if f.value == "" {
			ok.HeadersToRemove = append(ok.HeadersToRemove, lower)
			continue
		}
		set[n] = lower
		n++
		values[i] = corev3.HeaderValue{Key: f.name, Value: f.value}
		opts[i] = corev3.HeaderValueOption{Header: &values[i], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		ok.Headers = append(ok.Headers, &opts[i])
	}
	// Not the headers just set: Envoy may remove after it sets.
	for _, name := range forged {
		if !slices.Contains(set[:n], name) && !slices.Contains(ok.HeadersToRemove, name) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, name)
		}
	}
	// The key's RateLimit headers go back to the client, as on /v1/authz.
	for _, f := range rateLimitHeaders(a) {
		ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, overwrite(f.name, f.value))
	}
	var md [4]structpb.Value
	var str [4]structpb.Value_StringValue
	for i, v := range [4]string{a.res.Subject, a.res.Namespace, a.res.KeyID, policyLabel(a.decision.Policy)} {
		str[i].StringValue = v
		md[i].Kind = &str[i]
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			MetadataSubject: &md[0], MetadataNamespace: &md[1], MetadataKeyID: &md[2], MetadataPolicy: &md[3],
		}},
	}
}

// identityHeaderNames are identityHeaders' names as Envoy writes them,
// lower-cased, in the same order.
var identityHeaderNames = func() (out [6]string) {
	for i, f := range identityHeaders(authzAnswer{}) {
		out[i] = lowerASCII(f.name)
	}
	return out
}()

// deniedResponse refuses the request with the HTTP answer /v1/authz would
// give: its status, headers and body.
func deniedResponse(a authzAnswer) *authv3.CheckResponse {
	denied := &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(a.status)}}
	for _, f := range append(rateLimitHeaders(a), refusalHeaders(a)...) {
		denied.Headers = append(denied.Headers, overwrite(f.name, f.value))
	}
	ct, body := refusalBody(a)
	denied.Headers = append(denied.Headers, overwrite("Content-Type", ct))
	denied.Body = body
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(grpcCode(a.status)), Message: http.StatusText(a.status)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
	}
}

func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// grpcCode is the status of a CheckResponse refusing with HTTP status
// code: any but OK refuses, and the DeniedHttpResponse says what the
// client gets; the code is for Envoy's logs and stats.
func grpcCode(status int) codes.Code {
	switch status {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge:
		return codes.InvalidArgument
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.FailedPrecondition
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
