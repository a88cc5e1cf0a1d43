package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// cachedFixture is the fixture with a cache in its validator.
func cachedFixture(t testing.TB, maxEntries, maxBytes int) (fixture, *VerifiedCache) {
	t.Helper()
	f := newFixture(t)
	c := NewVerifiedCache(maxEntries, maxBytes)
	f.validator.Cache = c
	return f, c
}

// hitAllocs bounds the allocations of a cache hit; a full verification
// makes about 160 (see BenchmarkValidate). It tells hits from misses.
const hitAllocs = 4

func TestCacheServesATokenPresentedAgain(t *testing.T) {
	f, c := cachedFixture(t, 1<<10, 1<<20)
	tok := f.issue(t, sampleClaims(), testNow, time.Hour)
	first, err := f.validator.Validate(tok, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("cache holds %d entries after one success, want 1", c.Len())
	}
	var again *Claims
	allocs := testing.AllocsPerRun(100, func() { again, err = f.validator.Validate(tok, testNow.Add(time.Minute)) })
	if err != nil {
		t.Fatal(err)
	}
	if allocs > hitAllocs {
		t.Fatalf("a token presented again allocated %v times: it was verified again", allocs)
	}
	if again.Subject != first.Subject || again.ID != first.ID || !slices.Equal(again.Groups, first.Groups) {
		t.Fatalf("cached claims %+v differ from the first %+v", again, first)
	}

	// Callers get their own Claims: what they change does not reach the cache.
	again.Subject = "mallory"
	again.Groups = append(again.Groups, "admins")
	third, err := f.validator.Validate(tok, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if third.Subject != first.Subject || !slices.Equal(third.Groups, sampleClaims().Groups) {
		t.Fatalf("a caller's edits reached the cache: %+v", third)
	}
}

// TestCachedTokenStillPassesEveryPerRequestCheck: once a token is cached,
// what depends on time, on the validator's configuration or on the key set
// is still checked on every call.
func TestCachedTokenStillPassesEveryPerRequestCheck(t *testing.T) {
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const life = time.Hour
	cases := []struct {
		name string
		edit func(v *Validator)
		at   time.Time
		want error
	}{
		{"after exp and the leeway", nil, testNow.Add(life + DefaultLeeway), ErrExpired},
		{"after exp with no leeway", func(v *Validator) { v.Leeway = -1 }, testNow.Add(life), ErrExpired},
		{"before nbf and the leeway", nil, testNow.Add(-DefaultLeeway - time.Second), ErrNotYetValid},
		{"for audiences it does not name", func(v *Validator) { v.Audiences = []string{"https://elsewhere.example"} }, testNow, ErrAudience},
		{"for another issuer", func(v *Validator) { v.Issuer = "https://other-issuer.example" }, testNow, ErrIssuer},
		{"once its signing key left the set", func(v *Validator) {
			v.Key = func(string) (*ecdsa.PublicKey, bool) { return nil, false }
		}, testNow, ErrUnknownKey},
		{"once its kid names another key", func(v *Validator) {
			v.Key = func(string) (*ecdsa.PublicKey, bool) { return &otherKey.PublicKey, true }
		}, testNow, ErrSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, c := cachedFixture(t, 1<<10, 1<<20)
			tok := f.issue(t, sampleClaims(), testNow, life)
			if _, err := f.validator.Validate(tok, testNow); err != nil {
				t.Fatal(err)
			}
			if c.Len() != 1 {
				t.Fatalf("not cached: %d entries", c.Len())
			}
			v := f.validator
			if tc.edit != nil {
				tc.edit(&v)
			}
			for range 2 { // and not cached as a failure either
				cl, err := v.Validate(tok, tc.at)
				if !errors.Is(err, tc.want) || cl != nil {
					t.Fatalf("err = %v (claims %v), want %v", err, cl != nil, tc.want)
				}
			}
			// The unedited validator still accepts it, from the cache.
			if _, err := f.validator.Validate(tok, testNow); err != nil {
				t.Fatalf("the cached token stopped validating: %v", err)
			}
		})
	}
}

// TestCachedSiblingDoesNotVouchForATamperedToken: a token that differs from
// a cached one in a single byte is verified on its own, and refused.
func TestCachedSiblingDoesNotVouchForATamperedToken(t *testing.T) {
	f, c := cachedFixture(t, 1<<10, 1<<20)
	tok := f.issue(t, sampleClaims(), testNow, time.Hour)
	if _, err := f.validator.Validate(tok, testNow); err != nil {
		t.Fatal(err)
	}
	dot1 := strings.IndexByte(tok, '.')
	dot2 := strings.LastIndexByte(tok, '.')
	flip := func(i int) string {
		b := []byte(tok)
		// Another base64url character, high bits different, so the decoded
		// bytes change (the last character of a part has unused low bits).
		if b[i] == 'A' {
			b[i] = 'g'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := map[string]string{
		"a byte of the signature":         flip(dot2 + 1 + (len(tok)-dot2-1)/2),
		"the first byte of the signature": flip(dot2 + 1),
		"a byte of the payload":           flip(dot1 + 1 + (dot2-dot1-1)/2),
		"the signature of another token": func() string {
			o := f.issue(t, sampleClaims(), testNow, 2*time.Hour)
			return tok[:dot2] + o[strings.LastIndexByte(o, '.'):]
		}(),
		"the payload of another token": func() string {
			o := f.issue(t, sampleClaims(), testNow.Add(time.Second), time.Hour)
			return tok[:dot1] + o[strings.IndexByte(o, '.'):strings.LastIndexByte(o, '.')] + tok[dot2:]
		}(),
		"a trailing byte": tok + "A",
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			if bad == tok {
				t.Fatal("the tampered token is the original")
			}
			for range 2 {
				if cl, err := f.validator.Validate(bad, testNow); err == nil || cl != nil {
					t.Fatalf("tampered token accepted (err %v)", err)
				}
			}
			if c.Len() != 1 {
				t.Fatalf("cache holds %d entries, want only the original", c.Len())
			}
		})
	}
}

// TestFailuresAreNeverCached runs every known attack twice through a
// validator whose cache already holds genuine tokens: each is refused both
// times and none is stored.
func TestFailuresAreNeverCached(t *testing.T) {
	f, c := cachedFixture(t, 1<<10, 1<<20)
	good := f.issue(t, sampleClaims(), testNow, time.Hour)
	if _, err := f.validator.Validate(good, testNow); err != nil {
		t.Fatal(err)
	}
	for name, a := range attacks(t, f) {
		t.Run(name, func(t *testing.T) {
			for range 2 {
				cl, err := f.validator.Validate(a.token, testNow)
				if !errors.Is(err, a.want) || cl != nil {
					t.Fatalf("err = %v, want %v", err, a.want)
				}
				assertNoEcho(t, err, a.token)
			}
			if c.Len() != 1 {
				t.Fatalf("cache holds %d entries, want 1", c.Len())
			}
		})
	}
	// A genuine token refused for its claims is not stored either.
	expired := f.issue(t, sampleClaims(), testNow.Add(-2*time.Hour), time.Hour)
	if _, err := f.validator.Validate(expired, testNow); !errors.Is(err, ErrExpired) {
		t.Fatalf("err = %v, want ErrExpired", err)
	}
	// Nor one accepted only within the leeway after its exp.
	late := f.issue(t, sampleClaims(), testNow.Add(-time.Hour), time.Hour)
	if _, err := f.validator.Validate(late, testNow.Add(time.Second)); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	if c.Len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", c.Len())
	}
}

func TestCacheKeepsNoTokenText(t *testing.T) {
	f, c := cachedFixture(t, 1<<10, 1<<20)
	tok := f.issue(t, sampleClaims(), testNow, time.Hour)
	if _, err := f.validator.Validate(tok, testNow); err != nil {
		t.Fatal(err)
	}
	for i := range c.shards {
		for k, e := range c.shards[i].m {
			if k != sha256.Sum256([]byte(tok)) {
				t.Fatal("entry not keyed by the token's SHA-256")
			}
			s := fmt.Sprintf("%+v %+v", e, *e.claims)
			for part := range strings.SplitSeq(tok, ".") {
				if strings.Contains(s, part) {
					t.Fatalf("entry holds a part of the token: %s", s)
				}
			}
		}
	}
}

// TestCacheNeverExceedsItsBounds fills caches with far more tokens than they
// may hold, checking both bounds after every insert.
func TestCacheNeverExceedsItsBounds(t *testing.T) {
	f := newFixture(t)
	tokens := make([]string, 300)
	for i := range tokens {
		c := sampleClaims()
		if i%3 == 0 { // some large ones
			c.Groups = slices.Repeat([]string{fmt.Sprintf("group-%d", i)}, 40)
		}
		tokens[i] = f.issue(t, c, testNow.Add(time.Duration(i)*time.Second), time.Hour)
	}
	cases := []struct{ maxEntries, maxBytes int }{
		{1, 1 << 20},
		{7, 1 << 20},
		{64, 1 << 20},
		{1 << 10, 16 << 10},   // bytes bind
		{1 << 10, 2500},       // the largest tokens do not fit
		{64 << 10, 256 << 10}, // 16 shards, bytes bind
		{64 << 10, 40 << 10},  // 16 shards of one or two
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d entries %d bytes", tc.maxEntries, tc.maxBytes), func(t *testing.T) {
			v := f.validator
			v.Cache = NewVerifiedCache(tc.maxEntries, tc.maxBytes)
			for i, tok := range tokens {
				if _, err := v.Validate(tok, testNow.Add(5*time.Minute)); err != nil {
					t.Fatal(err)
				}
				if n, b := v.Cache.Len(), v.Cache.Bytes(); n > tc.maxEntries || b > tc.maxBytes {
					t.Fatalf("after %d tokens: %d entries, %d bytes", i+1, n, b)
				}
			}
			if v.Cache.Len() == 0 {
				t.Fatal("nothing was cached")
			}
		})
	}

	// Many more entries than a real run would see, inserted directly.
	const bound = 1 << 16
	c := NewVerifiedCache(bound, 1<<40)
	claims := &Claims{Expiry: jwt.NewNumericDate(testNow.Add(time.Hour))}
	var sum [sha256.Size]byte
	for i := range 3 * bound {
		binary.LittleEndian.PutUint64(sum[:], uint64(i)*0x9E3779B97F4A7C15)
		binary.LittleEndian.PutUint64(sum[8:], uint64(i))
		c.put(&sum, claims, "kid", nil, testNow)
		if i%1024 == 0 || i > 3*bound-100 {
			if n := c.Len(); n > bound {
				t.Fatalf("after %d inserts: %d entries > %d", i+1, n, bound)
			}
		}
	}
	if n := c.Len(); n < bound/2 {
		t.Fatalf("only %d entries kept of a bound of %d", n, bound)
	}
}

// TestCacheEvictsExpiredEntriesFirst: when full, expired entries go before
// live ones.
func TestCacheEvictsExpiredEntriesFirst(t *testing.T) {
	c := NewVerifiedCache(1, 1<<20) // one shard, one entry
	live := &Claims{Expiry: jwt.NewNumericDate(testNow.Add(time.Hour))}
	short := &Claims{Expiry: jwt.NewNumericDate(testNow.Add(time.Minute))}
	key := func(i byte) *[sha256.Size]byte { return &[sha256.Size]byte{i} }
	c.put(key(1), short, "kid", nil, testNow)
	c.put(key(2), live, "kid", nil, testNow.Add(2*time.Minute))
	if _, ok := c.shards[0].m[*key(2)]; !ok || c.Len() != 1 {
		t.Fatal("the live entry was not stored in place of the expired one")
	}

	c = NewVerifiedCache(8, 1<<20)
	for i := range 4 {
		c.put(key(byte(i)), live, "kid", nil, testNow)
	}
	for i := 4; i < 8; i++ {
		c.put(key(byte(i)), short, "kid", nil, testNow)
	}
	// Full, with four expired at this time: the newcomer evicts those.
	c.put(key(8), live, "kid", nil, testNow.Add(2*time.Minute))
	total := 0
	for i := range c.shards {
		for k := range c.shards[i].m {
			if k[0] >= 4 && k[0] < 8 {
				t.Fatalf("expired entry %d kept", k[0])
			}
			total++
		}
	}
	if total != 5 {
		t.Fatalf("%d entries kept, want the 4 live ones and the new one", total)
	}
}

func TestNilCacheCachesNothing(t *testing.T) {
	for _, c := range []*VerifiedCache{nil, NewVerifiedCache(0, 1<<20), NewVerifiedCache(10, 0)} {
		if c != nil {
			t.Fatalf("NewVerifiedCache with a zero bound = %v, want nil", c)
		}
		f := newFixture(t)
		f.validator.Cache = c
		tok := f.issue(t, sampleClaims(), testNow, time.Hour)
		for range 2 {
			if _, err := f.validator.Validate(tok, testNow); err != nil {
				t.Fatal(err)
			}
		}
		if c.Len() != 0 || c.Bytes() != 0 {
			t.Fatal("a nil cache holds entries")
		}
	}
}

// TestCacheJunkCostsNoAllocation: the shape checks still come first.
func TestCacheJunkCostsNoAllocation(t *testing.T) {
	f, _ := cachedFixture(t, 1<<10, 1<<20)
	for _, junk := range []string{strings.Repeat(".", 1<<20), strings.Repeat("a", MaxTokenBytes-1) + "..", "a.b.c.d"} {
		var err error
		if allocs := testing.AllocsPerRun(20, func() { _, err = f.validator.Validate(junk, testNow) }); allocs != 0 || !errors.Is(err, ErrMalformed) {
			t.Fatalf("junk: %v allocations, err %v", allocs, err)
		}
	}
}

// TestCacheConcurrentUse is for the race detector: validators sharing a
// cache while the key set changes under them.
func TestCacheConcurrentUse(t *testing.T) {
	f, _ := cachedFixture(t, 16, 1<<20)
	toks := make([]string, 40)
	for i := range toks {
		toks[i] = f.issue(t, sampleClaims(), testNow.Add(time.Duration(i)*time.Second), time.Hour)
	}
	var present sync.Map // kid -> bool; absent means published
	v := f.validator
	inner := v.Key
	v.Key = func(kid string) (*ecdsa.PublicKey, bool) {
		if _, gone := present.Load(kid); gone {
			return nil, false
		}
		return inner(kid)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				_, _ = v.Validate(toks[(g*7+i)%len(toks)], testNow.Add(time.Minute))
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			present.Store(f.key.ID, true)
			runtime.Gosched()
			present.Delete(f.key.ID)
		}
	})
	wg.Wait()
	present.Store(f.key.ID, true)
	for _, tok := range toks {
		if _, err := v.Validate(tok, testNow.Add(time.Minute)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("with the key gone: err = %v", err)
		}
	}
}

// TestCacheEntryCostCoversItsHeap checks the estimate each entry is charged
// against the heap entries really take.
func TestCacheEntryCostCoversItsHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	f := newFixture(t)
	for _, tc := range []struct {
		groups int
		name   func(j int) string
	}{
		{0, nil},
		{2, func(j int) string { return fmt.Sprintf("group-%d", j) }},
		{100, func(j int) string { return fmt.Sprintf("g%d", j) }},
		{400, func(j int) string { return string(rune('a' + j%26)) }},
		{20, func(j int) string { return strings.Repeat("x", 100+j) }},
	} {
		t.Run(fmt.Sprintf("%d groups", tc.groups), func(t *testing.T) {
			const n = 2000
			toks := make([]string, n)
			for i := range toks {
				c := sampleClaims()
				c.Groups = make([]string, tc.groups)
				for j := range c.Groups {
					c.Groups[j] = tc.name(j)
				}
				toks[i] = f.issue(t, c, testNow.Add(time.Duration(i)*time.Second), time.Hour)
			}
			v := f.validator
			v.Cache = NewVerifiedCache(1<<20, 1<<40)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for _, tok := range toks {
				if _, err := v.Validate(tok, testNow.Add(time.Hour-time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := int(after.HeapAlloc) - int(before.HeapAlloc)
			charged := v.Cache.Bytes()
			t.Logf("%d entries of %d-byte tokens: %d B of heap each, charged %d B each", n, len(toks[0]), heap/n, charged/n)
			if heap > charged {
				t.Fatalf("entries take %d B of heap, are charged %d B", heap, charged)
			}
			runtime.KeepAlive(toks)
		})
	}
}

func BenchmarkValidateCached(b *testing.B) {
	b.Run("hit", func(b *testing.B) {
		f, _ := cachedFixture(b, 1<<16, 32<<20)
		tok := f.issue(b, sampleClaims(), testNow, time.Hour)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.validator.Validate(tok, testNow); err != nil {
				b.Fatal(err)
			}
		}
	})
	// miss: distinct tokens, each verified and stored once (the cost a
	// cache adds to a token's first use).
	b.Run("miss", func(b *testing.B) {
		f := newFixture(b)
		toks := make([]string, 2048)
		for i := range toks {
			toks[i] = f.issue(b, sampleClaims(), testNow.Add(time.Duration(i)*time.Second), time.Hour)
		}
		v := f.validator
		v.Cache = NewVerifiedCache(1<<16, 32<<20)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			if i == len(toks) {
				b.StopTimer()
				v.Cache = NewVerifiedCache(1<<16, 32<<20)
				i = 0
				b.StartTimer()
			}
			if _, err := v.Validate(toks[i], testNow.Add(time.Hour-time.Minute)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
