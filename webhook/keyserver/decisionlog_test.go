package keyserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/peer"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines are the JSON lines written so far, decoded.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		out = append(out, m)
	}
	return out
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// decisionLogger is the manager's logger as main.go builds it (zap, JSON),
// writing to buf, named as operator/ names it.
func decisionLogger(buf *syncBuffer) logr.Logger {
	return zap.New(zap.WriteTo(buf), zap.JSONEncoder()).WithName("decision")
}

// withDecisionLog turns the decision log on, writing to buf.
func withDecisionLog(buf *syncBuffer, accepted bool, rate float64, burst int) func(*Options) {
	return func(o *Options) {
		o.DecisionLog = DecisionLogOptions{Logger: decisionLogger(buf), Accepted: accepted, Rate: rate, Burst: burst}
	}
}

// assertNoCanary fails when out holds any canary, or any substring of one
// of 8 bytes or more (each longer one holds one of 8).
func assertNoCanary(t *testing.T, out string, canaries ...string) {
	t.Helper()
	const window = 8
	for _, c := range canaries {
		if len(c) < window {
			t.Fatalf("canary %q is shorter than %d bytes: the check would prove nothing", c, window)
		}
		for i := 0; i+window <= len(c); i++ {
			if sub := c[i : i+window]; strings.Contains(out, sub) {
				t.Fatalf("the output holds %q, part of a canary, at %d:\n%s", sub, strings.Index(out, sub), out)
			}
		}
	}
}

// secretPart is what follows the public id in a Keyward key
// (prefix_id_secret+checksum).
func secretPart(t *testing.T, key string) string {
	t.Helper()
	id := keyIDOf(t, key)
	i := strings.Index(key, "_"+id+"_")
	if i < 0 {
		t.Fatalf("no id in the key")
	}
	return key[i+len(id)+2:]
}

// TestAttack62DecisionLogHoldsNoKeyMaterial: requests carrying known
// credentials, through every front end, accepted and refused, must leave
// no part of any secret in the decision log; credentials that do not
// validate leave no key id either (a client would choose it).
func TestAttack62DecisionLogHoldsNoKeyMaterial(t *testing.T) {
	var buf syncBuffer
	f := newFixture(t, withDecisionLog(&buf, true, 1000, 1000), func(o *Options) { o.FailureLimit = 1 << 20 })
	key := f.apiKey("app")
	ak, sk := f.pair("pair")
	tok := f.token(jsonToken(ak, sk, ""))
	if tok.status != http.StatusOK {
		t.Fatalf("token: %d %s", tok.status, tok.body)
	}
	guess := guessFor(t, keyIDOf(t, key)) // the real key's id, a wrong secret
	chosen := guessFor(t, "CANARYchosen") // an id the client chose
	forged := tok.resp.Token[:len(tok.resp.Token)-12] + "CANARYFORGED"

	// Every canary must fail to appear: the secrets, the token, and what a
	// client chose.
	canaries := []string{secretPart(t, key), sk, tok.resp.Token, secretPart(t, guess), chosen, forged}
	ok := func(what string, rec *httptest.ResponseRecorder, want int) {
		t.Helper()
		if rec.Code != want {
			t.Fatalf("%s: %d, want %d: %s", what, rec.Code, want, rec.Body)
		}
	}
	for _, cred := range []string{key, tok.resp.Token} {
		ok("authz", f.do(authzWith(cred)), http.StatusOK)
		ok("authz with a scope the key lacks", f.do(authzReq("/v1/authz?scope=admin", func(h http.Header) { h.Set("Authorization", "Bearer "+cred) })), http.StatusForbidden)
		ok("verify", f.do(verifyWith(cred)), http.StatusOK)
	}
	for _, cred := range []string{guess, chosen, forged} {
		ok("authz, invalid", f.do(authzWith(cred)), http.StatusUnauthorized)
		ok("verify, invalid", f.do(verifyWith(cred)), http.StatusOK)
		want := http.StatusUnauthorized
		if cred == forged {
			want = http.StatusBadRequest // rotate takes API keys only
		}
		ok("rotate, invalid", f.do(rotateWith(cred)), want)
	}
	ok("rotate without a rotator", f.do(rotateWith(key)), http.StatusNotImplemented)
	ok("tokens", f.do(basicToken(ak, sk)), http.StatusOK)
	ok("tokens, wrong secret", f.do(basicToken(ak, sk[:30]+"CANARYSKxx")), http.StatusUnauthorized)
	ok("tokens, a chosen id", f.do(basicToken("KWAKCANARYCHOSEN0000", sk)), http.StatusUnauthorized)
	canaries = append(canaries, sk[:30]+"CANARYSKxx", "KWAKCANARYCHOSEN0000")

	x := &extAuthz{s: f.s}
	envoy := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 40000}})
	for _, c := range []struct {
		cred string
		ok   bool
	}{{key, true}, {tok.resp.Token, true}, {guess, false}, {chosen, false}, {forged, false}} {
		resp, _ := x.Check(envoy, envoyCheck("api.example.com", "GET", "/x", map[string]string{"authorization": "Bearer " + c.cred}, nil))
		if got := resp.GetStatus().GetCode() == 0; got != c.ok {
			t.Fatalf("ext_authz: passed %v, want %v", got, c.ok)
		}
	}

	out := buf.String()
	assertNoCanary(t, out, canaries...)
	lines := buf.lines(t)
	// authz 2+2+3, verify 2+3, rotate 3+1, tokens 3 (and the fixture's
	// one), ext_authz 5.
	if want := 2 + 2 + 3 + 2 + 3 + 4 + 4 + 5; len(lines) != want {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), want, out)
	}
	seen := map[string]int{}
	for _, l := range lines {
		if l["logger"] != "decision" {
			t.Fatalf("logger %v, want decision", l["logger"])
		}
		for _, k := range []string{"time", "frontend", "code", "client"} {
			if v, ok := l[k]; !ok || v == "" {
				t.Fatalf("no %q in %v", k, l)
			}
		}
		seen[l["frontend"].(string)+"/"+l["msg"].(string)]++
		// A line without a validated key says nothing taken from the
		// credential.
		if l["code"] != "VALID" && l["code"] != "INSUFFICIENT_SCOPE" && l["code"] != "UNSUPPORTED" {
			if _, ok := l["keyID"]; ok {
				t.Fatalf("a refused credential's line names a key id: %v", l)
			}
		} else if l["code"] != "UNSUPPORTED" && (l["keyID"] == "" || l["namespace"] != "team-a" || l["subject"] == nil) {
			t.Fatalf("a validated key's line lacks its identity: %v", l)
		}
	}
	for _, fe := range []string{"authz/accepted", "authz/refused", "extauthz/accepted", "extauthz/refused",
		"verify/accepted", "verify/refused", "tokens/accepted", "tokens/refused", "rotate/refused"} {
		if seen[fe] == 0 {
			t.Errorf("no %s line: %v", fe, seen)
		}
	}
}

// TestDecisionLogOfAcceptedRequestsIsOffByDefault: with the flag unset,
// accepted requests write nothing; refused ones still do.
func TestDecisionLogOfAcceptedRequestsIsOffByDefault(t *testing.T) {
	var buf syncBuffer
	f := newFixture(t, withDecisionLog(&buf, false, 1000, 1000))
	key := f.apiKey("app")
	for range 3 {
		f.do(authzWith(key))
	}
	if out := buf.String(); out != "" {
		t.Fatalf("accepted requests were logged: %s", out)
	}
	f.do(authzWith("nope"))
	lines := buf.lines(t)
	if len(lines) != 1 || lines[0]["msg"] != "refused" || lines[0]["code"] == "" || lines[0]["client"] != "203.0.113.7" {
		t.Fatalf("lines: %v", lines)
	}
}

func droppedCount(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	if err := decisionLogDropped.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestAttack63DecisionLogFloodIsBounded: a flood of refused requests
// writes the burst, then the rate, and counts the rest; one summary line
// says how many were dropped.
func TestAttack63DecisionLogFloodIsBounded(t *testing.T) {
	var buf syncBuffer
	f := newFixture(t, withDecisionLog(&buf, false, 1, 5), func(o *Options) { o.FailureLimit = 1 << 20 })
	before := droppedCount(t)
	for range 1000 {
		f.do(authzWith("kw_flood"))
	}
	if n := len(buf.lines(t)); n != 5 {
		t.Fatalf("%d lines written by a flood at a still clock, want the burst of 5", n)
	}
	if d := droppedCount(t) - before; d != 995 {
		t.Fatalf("dropped counter rose by %v, want 995", d)
	}
	f.s.decisions.summarize()
	lines := buf.lines(t)
	last := lines[len(lines)-1]
	if last["msg"] != "decision log lines dropped" || last["dropped"] != float64(995) {
		t.Fatalf("summary: %v", last)
	}
	f.s.decisions.summarize() // nothing dropped since: no line
	f.clock.Step(time.Second)
	for range 10 {
		f.do(authzWith("kw_flood"))
	}
	if n := len(buf.lines(t)); n != 7 {
		t.Fatalf("%d lines, want 7 (one more a second)", n)
	}
}

// TestDecisionLogSummaryIsPeriodic: the summary is written on the clock's
// ticks, not only when asked.
func TestDecisionLogSummaryIsPeriodic(t *testing.T) {
	g := gomega.NewWithT(t)
	var buf syncBuffer
	f := newFixture(t, withDecisionLog(&buf, false, 1, 1))
	f.do(authzWith("kw_a"))
	f.do(authzWith("kw_b"))
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() { f.s.decisions.summarizeEvery(done, decisionLogSummaryEvery); close(stopped) }()
	defer func() { close(done); <-stopped }()
	g.Eventually(f.clock.HasWaiters).Should(gomega.BeTrue())
	f.clock.Step(decisionLogSummaryEvery)
	g.Eventually(func() int { return len(buf.lines(t)) }).Should(gomega.Equal(2))
}

// TestDecisionLogOffWritesNothing: a zero rate or no logger is no log.
func TestDecisionLogOffWritesNothing(t *testing.T) {
	var buf syncBuffer
	for _, o := range []DecisionLogOptions{{Logger: decisionLogger(&buf)}, {Rate: 10, Burst: 10}} {
		if d := newDecisionLog(o, nil); d != nil {
			t.Fatalf("%+v: a decision log", o)
		}
	}
}

// TestDecisionLogCostsNoAllocationWhenItHasNothingToWrite: an accepted
// request with accepted lines off, and no tracer, allocates what it does
// with the decision log off altogether (the hot path stays as measured).
func TestDecisionLogCostsNoAllocationWhenItHasNothingToWrite(t *testing.T) {
	var buf syncBuffer
	f := newCredFixture(t)
	allocs := func() float64 {
		r := hotRequests(f.apiKey)["nginx"]
		w := &discardWriter{}
		return testing.AllocsPerRun(200, func() {
			if serveOnce(f.s.Handler(), r, w) != http.StatusOK {
				t.Fatal("not 200")
			}
		})
	}
	off := allocs()
	f.s.decisions = newDecisionLog(DecisionLogOptions{Logger: decisionLogger(&buf), Rate: 1000, Burst: 1000}, f.clock)
	on := allocs()
	t.Logf("allocations per accepted /v1/authz: %v without the decision log, %v with it (refusals only)", off, on)
	if on != off {
		t.Fatalf("the decision log costs %v allocations per accepted request", on-off)
	}
	if buf.String() != "" {
		t.Fatalf("logged: %s", buf.String())
	}
}

// TestCanaryCheckFindsAPart: the canary check fails on any 8 bytes of a
// canary, wherever they sit in the output.
func TestCanaryCheckFindsAPart(t *testing.T) {
	const canary = "s3cr3tCANARYvalue0123"
	for _, out := range []string{`{"msg":"x","v":"` + canary + `"}`, `…cr3tCANA…`, `"VALUE0123"` + canary[13:]} {
		ft := &testing.T{}
		done := make(chan struct{})
		go func() { defer close(done); assertNoCanary(ft, out, canary) }()
		<-done
		if !ft.Failed() {
			t.Errorf("the canary check passed %q", out)
		}
	}
	assertNoCanary(t, `{"msg":"refused","code":"NOT_FOUND"}`, canary)
}
