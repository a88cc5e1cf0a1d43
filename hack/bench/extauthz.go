package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/webhook/keyserver"
)

// Figure 7: Envoy's gRPC ext_authz (issue 16). The key server's Check,
// decided by a KeyPolicy, against a bare gRPC Check handler that answers OK
// to everything, with the key server's gRPC limits: the same requests from
// the same client, the two searches interleaved as figure 1's pairs are.
// The rounds measure a third side, as figure 8's: a bare handler answering
// the key server's OK answer (headers, headers to remove, dynamic
// metadata) without deciding anything, what the answer alone costs.
const (
	extAuthzKeys = 10_000
	extAuthzHost = "api.example.com"
	extAuthzPath = "/v1/invoices/42"
	extAuthzNS   = "team-00"
)

// extAuthzResult is figure 7.
type extAuthzResult struct {
	// Rounds of closed-loop runs with both servers sharing the same
	// seconds (the figure's rate), as figure 6's.
	Rounds []extAuthzRound
	Conc   int
	RunDur time.Duration
	Slice  time.Duration
	// Pair is figure 1's interleaved search of both max sustained rates,
	// and the latency at half the key server's.
	Pair    pairResult
	Keys    int // keys in the index
	Targets int // distinct keys presented, cycled
	Conns   int // client connections per server
	Ref     string
	Headers int // headers of each CheckRequest, pseudo-headers included
	// Answer is the size of the OK answer the same-answer side gives:
	// headers set, headers removed, dynamic metadata entries.
	AnswerHeaders, AnswerRemoved, AnswerMetadata int
}

// sameAnswerAuthz answers every Check with the OK answer the key server
// gave (tmpl): the same identity headers, headers to remove and dynamic
// metadata, built anew per call as the key server builds its own (one
// allocation per kind of message), deciding nothing. What the answer costs
// gRPC and protobuf, apart from what deciding costs.
type sameAnswerAuthz struct {
	authv3.UnimplementedAuthorizationServer
	tmpl *authv3.CheckResponse
}

func (h sameAnswerAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	t := h.tmpl.GetOkResponse()
	hs := t.GetHeaders()
	opts := make([]corev3.HeaderValueOption, len(hs))
	values := make([]corev3.HeaderValue, len(hs))
	ok := &authv3.OkHttpResponse{
		Headers:         make([]*corev3.HeaderValueOption, len(hs)),
		HeadersToRemove: append(make([]string, 0, len(t.GetHeadersToRemove())), t.GetHeadersToRemove()...),
	}
	for i, o := range hs {
		values[i] = corev3.HeaderValue{Key: o.GetHeader().GetKey(), Value: o.GetHeader().GetValue()}
		opts[i] = corev3.HeaderValueOption{Header: &values[i], AppendAction: o.GetAppendAction()}
		ok.Headers[i] = &opts[i]
	}
	fs := h.tmpl.GetDynamicMetadata().GetFields()
	md := make([]structpb.Value, len(fs))
	str := make([]structpb.Value_StringValue, len(fs))
	fields := make(map[string]*structpb.Value, len(fs))
	i := 0
	for k, v := range fs {
		str[i].StringValue = v.GetStringValue()
		md[i].Kind = &str[i]
		fields[k] = &md[i]
		i++
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: &structpb.Struct{Fields: fields},
	}, nil
}

// bareAuthz answers every Check OK: the floor.
type bareAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (bareAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

// serveGRPC serves srv on a loopback port until ctx is done.
func serveGRPC(ctx context.Context, srv *grpc.Server) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); srv.Stop() }()
	return ln.Addr().String(), nil
}

// checkClients are n plaintext connections to addr, one Authorization
// client each: a few connections, as Envoy keeps one per worker thread.
func checkClients(ctx context.Context, addr string, n int) ([]authv3.AuthorizationClient, error) {
	var out []authv3.AuthorizationClient
	for range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		go func() { <-ctx.Done(); _ = conn.Close() }()
		out = append(out, authv3.NewAuthorizationClient(conn))
	}
	return out, nil
}

// envoyCheckRequest is a CheckRequest as Envoy's ext_authz filter sends it
// for a client's GET with key.
func envoyCheckRequest(key string, i int) *authv3.CheckRequest {
	h := map[string]string{
		":authority": extAuthzHost, ":method": http.MethodGet, ":path": extAuthzPath, ":scheme": "https",
		"user-agent": "curl/8.5.0", "accept": "*/*", "x-forwarded-proto": "https",
		"x-request-id":  fmt.Sprintf("9f1c7a1e-0000-4000-8000-%012d", i),
		"authorization": "Bearer " + key,
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234},
		}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: h["x-request-id"], Method: http.MethodGet, Path: extAuthzPath, Host: extAuthzHost, Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
		}},
	}}
}

// checkEndpoint is an endpoint calling Check on clients with reqs, cycled;
// a call is answered as wanted when it is OK.
func checkEndpoint(name, title string, clients []authv3.AuthorizationClient, reqs []*authv3.CheckRequest) endpoint {
	return endpoint{name: name, title: title, call: func(i int) bool {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		resp, err := clients[i%len(clients)].Check(ctx, reqs[i%len(reqs)])
		return err == nil && resp.GetStatus().GetCode() == 0 && resp.GetOkResponse() != nil
	}}
}

func benchExtAuthz(ctx context.Context, lg *loadGen) (*extAuthzResult, error) {
	progress("figure 7: gRPC ext_authz Check (a KeyPolicy deciding) vs a bare gRPC Check handler answering OK, interleaved")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := &extAuthzResult{Keys: extAuthzKeys, Conns: runtime.GOMAXPROCS(0)}

	s := keyserver.New(keyserver.Options{FailureLimit: 1 << 30, FailureRefill: time.Millisecond, DefaultPolicy: keypolicy.ModeDeny})
	recs, keys, err := fleet(extAuthzKeys, time.Now())
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if err := s.Index().Upsert(hashsecret.Name(r.Kind, r.Namespace, r.Name), r); err != nil {
			return nil, err
		}
	}
	policy := kw.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: extAuthzNS, Name: "api", Generation: 1, CreationTimestamp: metav1.NewTime(time.Now())},
		Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{extAuthzHost},
			Rules: []kw.KeyPolicyRule{{PathPrefix: "/v1", Methods: []kw.HTTPMethod{http.MethodGet}, RequiredScopes: []string{"invoices:read"}}}},
	}
	res.Ref = policy.Namespace + "/" + policy.Name
	s.SetPolicies(keypolicy.Build([]kw.KeyPolicy{policy}))
	s.SetSynced(func() bool { return true })

	ea := keyserver.NewExtAuthzServer(s, keyserver.ExtAuthzOptions{BindAddress: "127.0.0.1:0"})
	done := make(chan error, 1)
	go func() { done <- ea.Start(ctx) }()
	defer func() { cancel(); <-done }()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	kaddr, err := ea.Addr(actx)
	acancel()
	if err != nil {
		return nil, fmt.Errorf("figure 7: the ext_authz listener did not start: %w", err)
	}
	bare := grpc.NewServer(keyserver.GRPCServerOptions()...)
	authv3.RegisterAuthorizationServer(bare, bareAuthz{})
	baddr, err := serveGRPC(ctx, bare)
	if err != nil {
		return nil, err
	}

	// The keys of the policy's namespace (the fleet's are team-(i%50)).
	var reqs []*authv3.CheckRequest
	var stranger string
	for i, r := range recs {
		if r.Namespace != extAuthzNS {
			if stranger == "" {
				stranger = keys[i]
			}
			continue
		}
		reqs = append(reqs, envoyCheckRequest(keys[i], len(reqs)))
	}
	res.Targets, res.Headers = len(reqs), len(reqs[0].GetAttributes().GetRequest().GetHttp().GetHeaders())

	kclients, err := checkClients(ctx, kaddr.String(), res.Conns)
	if err != nil {
		return nil, err
	}
	bclients, err := checkClients(ctx, baddr, res.Conns)
	if err != nil {
		return nil, err
	}
	// What is measured is what it claims to be: the policy decides (a key
	// of another namespace is refused), and an unknown key is a 401.
	if err := wantCheck(kclients[0], reqs[0], http.StatusOK, res.Ref); err != nil {
		return nil, err
	}
	if err := wantCheck(kclients[0], envoyCheckRequest(stranger, 0), http.StatusForbidden, res.Ref); err != nil {
		return nil, err
	}
	if err := wantCheck(kclients[0], envoyCheckRequest("kw_AAAAAAAAAAAA_"+fmt.Sprint(time.Now().UnixNano()), 0), http.StatusUnauthorized, ""); err != nil {
		return nil, err
	}

	// The third side answers what the key server answered.
	tmpl, err := kclients[0].Check(ctx, reqs[0])
	if err != nil {
		return nil, fmt.Errorf("figure 7: Check: %w", err)
	}
	ok := tmpl.GetOkResponse()
	res.AnswerHeaders, res.AnswerRemoved, res.AnswerMetadata = len(ok.GetHeaders()), len(ok.GetHeadersToRemove()), len(tmpl.GetDynamicMetadata().GetFields())
	same := grpc.NewServer(keyserver.GRPCServerOptions()...)
	authv3.RegisterAuthorizationServer(same, sameAnswerAuthz{tmpl: tmpl})
	saddr, err := serveGRPC(ctx, same)
	if err != nil {
		return nil, err
	}
	sclients, err := checkClients(ctx, saddr, res.Conns)
	if err != nil {
		return nil, err
	}
	if got, err := sclients[0].Check(ctx, reqs[0]); err != nil || !proto.Equal(got, tmpl) {
		return nil, fmt.Errorf("figure 7: the same-answer handler does not answer as the key server (%v)", err)
	}

	b := checkEndpoint("extauthz-bare", "bare gRPC Check handler (OK)", bclients, reqs)
	sa := checkEndpoint("extauthz-same", "bare gRPC Check handler (the key server's OK answer)", sclients, reqs)
	e := checkEndpoint("extauthz-check", "gRPC ext_authz Check, API key, KeyPolicy", kclients, reqs)
	caps, err := lg.maxRates(ctx, []endpoint{b, e}, []bool{true, true})
	if err != nil {
		return nil, err
	}
	p := pairResult{Bare: caps[0], Endpoint: caps[1]}
	p.BareAtHalf = lg.attack(b, p.Endpoint.Half.Rate, lg.m.halfDur)
	p.Bare.judge(&p.BareAtHalf)
	progress("  bare handler at %.0f/s: p50 %s p99 %s", p.BareAtHalf.Rate, fmtDur(p.BareAtHalf.P50), fmtDur(p.BareAtHalf.P99))
	pause()
	res.Pair = p
	res.Conc, res.RunDur, res.Slice = 8*runtime.GOMAXPROCS(0), lg.m.probeDur, policySlice
	for r := range lg.m.policyRounds {
		// Each side starts a round in turn.
		rates, err := switchedCallRates([]endpoint{e, b, sa}, res.RunDur, res.Conc, r%3)
		if err != nil {
			return nil, err
		}
		rd := extAuthzRound{Check: rates[0], Bare: rates[1], Same: rates[2]}
		res.Rounds = append(res.Rounds, rd)
		progress("  round %d: Check %.0f/s, bare %.0f/s: %.3f; bare with the same answer %.0f/s: Check ÷ it %.3f, it ÷ bare %.3f",
			r+1, rd.Check, rd.Bare, rd.ratio(), rd.Same, rd.sameRatio(), rd.Same/rd.Bare)
		pause()
	}
	med, lo, hi := res.ratio()
	smed, slo, shi := res.sameRatio()
	progress("  median of %d rounds' ratios %.3f (%.3f–%.3f); Check ÷ the same answer %.3f (%.3f–%.3f)", len(res.Rounds), med, lo, hi, smed, slo, shi)
	if err := wantCheck(kclients[0], reqs[len(reqs)-1], http.StatusOK, res.Ref); err != nil {
		return nil, err
	}
	return res, nil
}

// extAuthzRound is one closed-loop run shared by the three servers: the
// key server, the bare one and the bare one giving the same answer.
type extAuthzRound struct{ Check, Bare, Same float64 }

func (r extAuthzRound) ratio() float64 { return r.Check / r.Bare }

// sameRatio is Check over the bare handler giving the same answer.
func (r extAuthzRound) sameRatio() float64 { return r.Check / r.Same }

// ratio is the median of the rounds' ratios, and their lowest and highest.
func (ea *extAuthzResult) ratio() (med, lo, hi float64) {
	return ea.spread(extAuthzRound.ratio)
}

// sameRatio is ratio for Check over the same-answer handler.
func (ea *extAuthzResult) sameRatio() (med, lo, hi float64) {
	return ea.spread(extAuthzRound.sameRatio)
}

// sameOverBare is ratio for the same-answer handler over the bare one:
// the protocol's floor for Check.
func (ea *extAuthzResult) sameOverBare() (med, lo, hi float64) {
	return ea.spread(func(r extAuthzRound) float64 { return r.Same / r.Bare })
}

func (ea *extAuthzResult) spread(f func(extAuthzRound) float64) (med, lo, hi float64) {
	rs := make([]float64, len(ea.Rounds))
	for i, r := range ea.Rounds {
		rs[i] = f(r)
	}
	slices.Sort(rs)
	if len(rs) == 0 {
		return 0, 0, 0
	}
	return medianOf(rs), rs[0], rs[len(rs)-1]
}

// switchedCallRates runs conc concurrent callers for d (closed loop) that
// send each request to whichever of eps holds the turn: the turn passes
// from one to the next every policySlice, starting with eps[first]. Each
// answer wanted is counted for the side it was sent to, and each side's
// rate is its count over the time it held the turn: all sides share the
// same seconds, so another job's burst hits them alike (as figure 6's
// rounds).
func switchedCallRates(eps []endpoint, d time.Duration, conc, first int) ([]float64, error) {
	n := make([]atomic.Int64, len(eps))
	held := make([]time.Duration, len(eps))
	var bad atomic.Int64
	var turn atomic.Int32
	var stop atomic.Bool
	var wg sync.WaitGroup
	side := first
	turn.Store(int32(side))
	for w := range conc {
		wg.Go(func() {
			for i := w; !stop.Load(); i += conc {
				k := turn.Load()
				if eps[k].call(i) {
					n[k].Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	deadline := time.Now().Add(d)
	for t := time.Now(); t.Before(deadline); {
		turn.Store(int32(side))
		time.Sleep(policySlice)
		now := time.Now()
		held[side] += now.Sub(t)
		t, side = now, (side+1)%len(eps)
	}
	stop.Store(true)
	wg.Wait()
	if x := bad.Load(); x > 0 {
		return nil, fmt.Errorf("figure 7: %d answers were not OK", x)
	}
	out := make([]float64, len(eps))
	for i := range eps {
		if n[i].Load() == 0 {
			return nil, errors.New("figure 7: a side answered nothing")
		}
		out[i] = float64(n[i].Load()) / held[i].Seconds()
	}
	return out, nil
}

// wantCheck calls Check once and wants the HTTP status status (200 for OK)
// and X-Keyward-Policy policy (on a 200 or 403).
func wantCheck(c authv3.AuthorizationClient, req *authv3.CheckRequest, status int, policy string) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		return fmt.Errorf("figure 7: Check: %w", err)
	}
	got, gotPolicy := 0, ""
	var opts []*corev3.HeaderValueOption
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		got, opts = http.StatusOK, r.OkResponse.GetHeaders()
	case *authv3.CheckResponse_DeniedResponse:
		got, opts = int(r.DeniedResponse.GetStatus().GetCode()), r.DeniedResponse.GetHeaders()
	default:
		return errors.New("figure 7: Check answered neither OK nor denied")
	}
	for _, o := range opts {
		if o.GetHeader().GetKey() == wire.HeaderPolicy {
			gotPolicy = o.GetHeader().GetValue()
		}
	}
	if got != status || (status != http.StatusUnauthorized && gotPolicy != policy) {
		return fmt.Errorf("figure 7: Check answered %d by %q; want %d by %q", got, gotPolicy, status, policy)
	}
	return nil
}
