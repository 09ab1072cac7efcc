package auth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/auth"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/handlers"
	"github.com/snapsweep/snapsweep/ingest"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/telemetry"
)

const (
	// certsURL is where idtoken fetches Google's RS256 keys (a JWKS).
	certsURL = "https://www.googleapis.com/oauth2/v3/certs"
	audience = "https://snapsweep.test/pubsub/snapshot-cleanup"
	pushSA   = "push-invoker@proj-a.iam.gserviceaccount.com"
	kid      = "test-key-1"
)

// Keys are generated once: RSA key generation is the slow part of these tests.
var (
	googleKey = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
	otherKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
)

func mustKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwks renders the public key the way https://www.googleapis.com/oauth2/v3/certs does.
func jwks(k *rsa.PublicKey) []byte {
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
	}}})
	return b
}

// certServer is a RoundTripper standing in for Google's cert endpoint. It
// records every URL asked for.
type certServer struct {
	down bool // answer 500

	mu      sync.Mutex
	fetched []string
}

func (c *certServer) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.fetched = append(c.fetched, r.URL.String())
	c.mu.Unlock()
	rec := httptest.NewRecorder()
	switch {
	case c.down:
		http.Error(rec, "backend error", http.StatusInternalServerError)
	case r.URL.String() == certsURL:
		rec.Header().Set("Content-Type", "application/json")
		rec.Header().Set("Cache-Control", "public, max-age=3600")
		rec.Write(jwks(&googleKey().PublicKey))
	default:
		http.NotFound(rec, r)
	}
	return rec.Result(), nil
}

func (c *certServer) urls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.fetched...)
}

// token assembles and signs a JWT. alg decides the signature: RS256 with
// key, HS256 with the public key as HMAC secret (the classic algorithm
// confusion attack), anything else an arbitrary or empty signature.
func token(t *testing.T, key *rsa.PrivateKey, hdr, claims map[string]any) string {
	t.Helper()
	hb, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := b64(hb) + "." + b64(cb)
	var sig []byte
	switch hdr["alg"] {
	case "RS256":
		sum := sha256.Sum256([]byte(signed))
		if sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:]); err != nil {
			t.Fatal(err)
		}
	case "HS256":
		der, err := x509.MarshalPKIXPublicKey(&googleKey().PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		mac.Write([]byte(signed))
		sig = mac.Sum(nil)
	case "ES256":
		sig = bytes.Repeat([]byte{7}, 64)
	}
	return signed + "." + b64(sig)
}

func goodHeader() map[string]any { return map[string]any{"alg": "RS256", "kid": kid, "typ": "JWT"} }

func goodClaims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": "https://accounts.google.com", "aud": audience, "azp": "1234567890",
		"sub": "1234567890", "email": pushSA, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func newVerifier(t *testing.T, certs *certServer, mp *sdkmetric.MeterProvider) *auth.Verifier {
	t.Helper()
	cfg := auth.Config{
		Audience:        audience,
		ServiceAccounts: []string{pushSA, "Scheduler-Invoker@proj-a.iam.gserviceaccount.com"},
	}
	if mp != nil {
		cfg.Meter = mp
	}
	v, err := auth.New(context.Background(), cfg, option.WithHTTPClient(&http.Client{Transport: certs}))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// countingBody records whether anything read the request body.
type countingBody struct {
	mu sync.Mutex
	n  int
	r  io.Reader
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return b.r.Read(p)
}

func (b *countingBody) reads() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// failures reads snapsweep.auth.failures by reason.
func failures(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "snapsweep.auth.failures" {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("snapsweep.auth.failures is %T, want a Sum[int64]", m.Data)
			}
			for _, dp := range sum.DataPoints {
				r, _ := dp.Attributes.Value("reason")
				got[r.AsString()] += dp.Value
			}
		}
	}
	return got
}

func TestVerifierAndMiddleware(t *testing.T) {
	t.Parallel()
	type (
		hdrs   = map[string]any
		claims = map[string]any
	)
	tests := []struct {
		name string
		// authz builds the Authorization header values; nil means
		// "Bearer " + the token made from the modified header and claims.
		authz  func(t *testing.T, tok string) []string
		key    func() *rsa.PrivateKey // default googleKey
		header func(h hdrs)
		claims func(c claims)
		// tamper changes the token after signing.
		tamper    func(tok string) string
		certsDown bool

		wantCode   int
		wantReason auth.Reason // "" for success
		wantEmail  string
	}{
		{name: "valid token passes", wantCode: http.StatusOK, wantEmail: pushSA},
		{name: "issuer without scheme passes", claims: func(c claims) { c["iss"] = "accounts.google.com" },
			wantCode: http.StatusOK, wantEmail: pushSA},
		{name: "email compared case-insensitively", claims: func(c claims) { c["email"] = "scheduler-invoker@PROJ-A.iam.gserviceaccount.com" },
			wantCode: http.StatusOK, wantEmail: "scheduler-invoker@PROJ-A.iam.gserviceaccount.com"},
		{name: "lower-case bearer scheme passes", authz: func(_ *testing.T, tok string) []string { return []string{"bearer " + tok} },
			wantCode: http.StatusOK, wantEmail: pushSA},

		{name: "missing header", authz: func(*testing.T, string) []string { return nil },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMissing},
		{name: "basic scheme", authz: func(*testing.T, string) []string { return []string{"Basic dXNlcjpwYXNz"} },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "empty bearer token", authz: func(*testing.T, string) []string { return []string{"Bearer "} },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "two authorization headers", authz: func(_ *testing.T, tok string) []string { return []string{"Bearer " + tok, "Bearer " + tok} },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "two segments", tamper: func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')] },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "header not base64", tamper: func(tok string) string { return "!!!" + tok },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "payload not JSON", tamper: func(tok string) string {
			p := strings.Split(tok, ".")
			return p[0] + "." + b64([]byte("not json")) + "." + p[2]
		}, wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "audience as an array", claims: func(c claims) { c["aud"] = []string{audience, "other"} },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "signature not base64", tamper: func(tok string) string { return tok + "*" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},
		{name: "oversized token", claims: func(c claims) { c["pad"] = strings.Repeat("x", 20<<10) },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonMalformed},

		{name: "expired", claims: func(c claims) {
			c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
		}, wantCode: http.StatusUnauthorized, wantReason: auth.ReasonExpired},
		{name: "no expiry", claims: func(c claims) { delete(c, "exp") },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonExpired},
		{name: "wrong audience", claims: func(c claims) { c["aud"] = "https://other-service.test/" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonWrongAudience},
		{name: "wrong issuer", claims: func(c claims) { c["iss"] = "https://evil.example.com" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonWrongIssuer},
		{name: "email not allowed", claims: func(c claims) { c["email"] = "attacker@proj-b.iam.gserviceaccount.com" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonEmailNotAllowed},
		{name: "allowed email as suffix of another", claims: func(c claims) { c["email"] = "x" + pushSA },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonEmailNotAllowed},
		{name: "no email", claims: func(c claims) { delete(c, "email") },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonEmailNotAllowed},
		{name: "unverified email", claims: func(c claims) { c["email_verified"] = false },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonUnverifiedEmail},
		{name: "email_verified as a string", claims: func(c claims) { c["email_verified"] = "true" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonUnverifiedEmail},
		{name: "email_verified missing", claims: func(c claims) { delete(c, "email_verified") },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonUnverifiedEmail},
		{name: "signed with another key", key: otherKey,
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonBadSignature},
		{name: "unknown key id", header: func(h hdrs) { h["kid"] = "no-such-key" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonBadSignature},
		{name: "payload altered after signing", tamper: func(tok string) string {
			p := strings.Split(tok, ".")
			c := goodClaims()
			c["email"] = "scheduler-invoker@proj-a.iam.gserviceaccount.com"
			b, _ := json.Marshal(c)
			return p[0] + "." + b64(b) + "." + p[2]
		}, wantCode: http.StatusUnauthorized, wantReason: auth.ReasonBadSignature},
		{name: "HS256 with the public key as secret", header: func(h hdrs) { h["alg"] = "HS256" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonWrongAlgorithm},
		{name: "alg none", header: func(h hdrs) { h["alg"] = "none" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonWrongAlgorithm},
		{name: "alg missing", header: func(h hdrs) { delete(h, "alg") },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonWrongAlgorithm},
		{name: "ES256 (accepted by idtoken, not by snapsweep)", header: func(h hdrs) { h["alg"] = "ES256" },
			wantCode: http.StatusUnauthorized, wantReason: auth.ReasonWrongAlgorithm},
		{name: "cert endpoint down", certsDown: true,
			wantCode: http.StatusServiceUnavailable, wantReason: auth.ReasonCertsUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := googleKey()
			if tc.key != nil {
				key = tc.key()
			}
			h, c := goodHeader(), goodClaims()
			if tc.header != nil {
				tc.header(h)
			}
			if tc.claims != nil {
				tc.claims(c)
			}
			tok := token(t, key, h, c)
			if tc.tamper != nil {
				tok = tc.tamper(tok)
			}
			authz := []string{"Bearer " + tok}
			if tc.authz != nil {
				authz = tc.authz(t, tok)
			}
			newRequest := func(ctx context.Context, body io.Reader) *http.Request {
				r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/pubsub/snapshot-cleanup", body)
				for _, a := range authz {
					r.Header.Add("Authorization", a)
				}
				return r
			}

			certs := &certServer{down: tc.certsDown}
			reader := sdkmetric.NewManualReader()
			v := newVerifier(t, certs, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))

			// Verify: the reason and the caller.
			email, err := v.Verify(context.Background(), newRequest(context.Background(), nil))
			if got := auth.ReasonOf(err); got != tc.wantReason {
				t.Errorf("Verify reason = %q (%v), want %q", got, err, tc.wantReason)
			}
			if err != nil && !errors.As(err, new(*auth.Error)) {
				t.Errorf("Verify error %v (%T) is not an *auth.Error", err, err)
			}
			if err != nil && tok != "" && strings.Contains(err.Error(), tok) {
				t.Errorf("Verify error contains the token")
			}
			if email != tc.wantEmail {
				t.Errorf("Verify email = %q, want %q", email, tc.wantEmail)
			}
			switch tc.wantReason {
			case auth.ReasonMissing, auth.ReasonMalformed, auth.ReasonWrongAlgorithm:
				// Refused by snapsweep's own checks, before idtoken looks for keys.
				if got := certs.urls(); len(got) != 0 {
					t.Errorf("keys fetched for a token refused up front: %v", got)
				}
			}
			for _, u := range certs.urls() {
				if u != certsURL {
					t.Errorf("fetched %s; only %s holds the RS256 keys", u, certsURL)
				}
			}

			// Middleware: status, next handler, body untouched, one log line, one count.
			var logs bytes.Buffer
			ctx := telemetry.WithLogger(context.Background(), slog.New(slog.NewJSONHandler(&logs, nil)))
			body := &countingBody{r: strings.NewReader(`{"message":{"data":"e30=","messageId":"1"}}`)}
			ran := false
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran = true
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusOK)
			})
			rec := httptest.NewRecorder()
			v.Middleware(next).ServeHTTP(rec, newRequest(ctx, body))

			type effects struct {
				Code            int
				NextRan         bool
				BodyRead        bool
				WWWAuthenticate string
				Failures        map[string]int64
				LogReasons      []string
			}
			want := effects{Code: tc.wantCode, NextRan: tc.wantReason == "", BodyRead: tc.wantReason == "", Failures: map[string]int64{}}
			if tc.wantReason != "" {
				want.Failures[string(tc.wantReason)] = 1
				want.LogReasons = []string{string(tc.wantReason)}
			}
			if tc.wantCode == http.StatusUnauthorized {
				want.WWWAuthenticate = "Bearer"
			}
			got := effects{
				Code: rec.Code, NextRan: ran, BodyRead: body.reads() > 0,
				WWWAuthenticate: rec.Header().Get("WWW-Authenticate"), Failures: failures(t, reader),
			}
			for line := range strings.Lines(logs.String()) {
				var rec struct {
					Level, Reason string
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec.Level != "WARN" && !(rec.Level == "ERROR" && tc.wantReason == auth.ReasonCertsUnavailable) {
					t.Errorf("refusal logged at %s: %s", rec.Level, line)
				}
				got.LogReasons = append(got.LogReasons, rec.Reason)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("middleware effects (-want +got):\n%s", diff)
			}
			if len(tok) > 20 && strings.Contains(logs.String(), tok[len(tok)-20:]) {
				t.Errorf("the log contains the token's signature: %s", logs.String())
			}
			if tc.wantReason != "" && len(rec.Body.String()) > 64 {
				t.Errorf("refusal body is %d bytes, want a short one: %q", rec.Body.Len(), rec.Body.String())
			}
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         auth.Config
		wantEnabled bool
		wantErrs    int // problems New reports
	}{
		{name: "nothing set: auth off", cfg: auth.Config{}, wantEnabled: false, wantErrs: 2},
		{name: "blank audience: auth off", cfg: auth.Config{Audience: "  ", ServiceAccounts: []string{pushSA}}, wantEnabled: false, wantErrs: 1},
		{name: "audience and accounts", cfg: auth.Config{Audience: audience, ServiceAccounts: []string{pushSA, " "}}, wantEnabled: true},
		{name: "audience without accounts", cfg: auth.Config{Audience: audience}, wantEnabled: true, wantErrs: 1},
		{name: "account not an email", cfg: auth.Config{Audience: audience, ServiceAccounts: []string{"push-invoker", "@x", "a b@c"}}, wantEnabled: true, wantErrs: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := auth.Enabled(tc.cfg); got != tc.wantEnabled {
				t.Errorf("Enabled = %v, want %v", got, tc.wantEnabled)
			}
			_, err := auth.New(context.Background(), tc.cfg, option.WithHTTPClient(&http.Client{Transport: &certServer{}}))
			var n int
			if err != nil {
				n = strings.Count(err.Error(), "\n") + 1
			}
			if n != tc.wantErrs {
				t.Errorf("New reported %d problems (%v), want %d", n, err, tc.wantErrs)
			}
		})
	}
}

// Stubs for a handlers.Server: no request in TestWiring gets as far as them.
type noEvents struct{}

func (noEvents) Apply(context.Context, events.Event) (ingest.Outcome, error) {
	return ingest.Outcome{}, nil
}

type noRejects struct{}

func (noRejects) AddRejected(context.Context, store.Rejected) error { return nil }

// TestWiring checks the middleware the way cmd/snapsweep installs it:
// handlers.Config.Auth is set only when auth.Enabled; without it requests
// pass, with it the scheduler and push routes need a token and the probes
// do not. The server has no Sweeper, so a request that reaches the sweep
// handler is answered 503 "sweep not configured": that is how the test
// tells "passed the gate" from 401 without depending on the Sweeper
// interface.
func TestWiring(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cfg       auth.Config
		path      string
		method    string
		withToken bool
		wantCode  int
	}{
		{name: "auth off: sweep without token reaches the handler", cfg: auth.Config{}, path: "/scheduler/sweep", method: http.MethodPost,
			wantCode: http.StatusServiceUnavailable},
		{name: "auth on: sweep without token refused", cfg: auth.Config{Audience: audience, ServiceAccounts: []string{pushSA}},
			path: "/scheduler/sweep", method: http.MethodPost, wantCode: http.StatusUnauthorized},
		{name: "auth on: push without token refused", cfg: auth.Config{Audience: audience, ServiceAccounts: []string{pushSA}},
			path: "/pubsub/migration-events", method: http.MethodPost, wantCode: http.StatusUnauthorized},
		{name: "auth on: sweep with token reaches the handler", cfg: auth.Config{Audience: audience, ServiceAccounts: []string{pushSA}},
			path: "/scheduler/sweep", method: http.MethodPost, withToken: true, wantCode: http.StatusServiceUnavailable},
		{name: "auth on: health needs no token", cfg: auth.Config{Audience: audience, ServiceAccounts: []string{pushSA}},
			path: "/health", method: http.MethodGet, wantCode: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hcfg := handlers.Config{Events: noEvents{}, Rejects: noRejects{}, Logger: slog.New(slog.DiscardHandler)}
			if auth.Enabled(tc.cfg) {
				tc.cfg.Meter = sdkmetric.NewMeterProvider()
				v, err := auth.New(context.Background(), tc.cfg, option.WithHTTPClient(&http.Client{Transport: &certServer{}}))
				if err != nil {
					t.Fatal(err)
				}
				hcfg.Auth = v.Middleware
			}
			srv, err := handlers.New(hcfg)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequestWithContext(telemetry.WithLogger(context.Background(), slog.New(slog.DiscardHandler)),
				tc.method, tc.path, strings.NewReader(`{}`))
			if tc.withToken {
				r.Header.Set("Authorization", "Bearer "+token(t, googleKey(), goodHeader(), goodClaims()))
			}
			rec := httptest.NewRecorder()
			srv.Routes().ServeHTTP(rec, r)
			if rec.Code != tc.wantCode {
				t.Errorf("%s %s: status %d (%s), want %d", tc.method, tc.path, rec.Code, rec.Body, tc.wantCode)
			}
		})
	}
}
