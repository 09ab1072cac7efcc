// Package auth checks that a request to snapsweep's push and scheduler
// endpoints comes from a caller allowed to make it: it carries a
// Google-signed OIDC ID token (the one Pub/Sub push and Cloud Scheduler
// attach for their service account) with the configured audience, issued by
// Google to a verified email on the allowlist (SNAPSWEEP_AUTH_AUDIENCE,
// SNAPSWEEP_AUTH_SERVICE_ACCOUNTS).
//
// Cloud Run's IAM invoker check already stops unauthenticated callers when
// the service is deployed without public access; this check is the second
// gate, inside the service, for deployments that allow unauthenticated
// invocations (e.g. behind a load balancer) and to pin the exact caller
// accounts rather than anyone holding roles/run.invoker.
//
// Tokens are verified with google.golang.org/api/idtoken: it is Google's own
// validator for Google-issued ID tokens, already in the module graph through
// the Cloud client libraries, fetches and caches Google's signing keys
// (https://www.googleapis.com/oauth2/v3/certs) honouring Cache-Control, and
// takes an HTTP client option so that tests serve their own keys. It checks
// the signature, expiry and audience only, so this package checks the rest
// itself: the algorithm (RS256 only, before any key is fetched), the issuer,
// email_verified and the email allowlist.
//
// It owns the check only: it must not look into the request body, and it
// decides nothing about snapshots or messages.
package auth

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/telemetry"
)

// Config configures a Verifier.
type Config struct {
	// Audience is the audience the token must be issued for
	// (SNAPSWEEP_AUTH_AUDIENCE): for Pub/Sub push the audience set on the
	// subscription (by default the push endpoint URL), for Cloud Scheduler
	// the job's OIDC audience. Empty turns the check off (see Enabled).
	Audience string
	// ServiceAccounts are the emails allowed to call
	// (SNAPSWEEP_AUTH_SERVICE_ACCOUNTS), compared case-insensitively.
	ServiceAccounts []string
	// Meter provides the failure counter (default: the global provider).
	Meter metric.MeterProvider
}

// Enabled reports whether cfg asks for authentication: only then is the
// middleware installed (handlers.Config.Auth); without an audience requests
// pass unchecked, as in local runs against the emulators.
func Enabled(cfg Config) bool { return strings.TrimSpace(cfg.Audience) != "" }

// Validate reports every problem of cfg at once.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Audience) == "" {
		errs = append(errs, errors.New("auth: Audience is required"))
	}
	n := 0
	for _, sa := range c.ServiceAccounts {
		sa = strings.TrimSpace(sa)
		if sa == "" {
			continue
		}
		n++
		if at := strings.IndexByte(sa, '@'); at <= 0 || at == len(sa)-1 || strings.ContainsAny(sa, " \t\r\n") {
			errs = append(errs, fmt.Errorf("auth: service account %q is not an email", sa))
		}
	}
	if n == 0 {
		errs = append(errs, errors.New("auth: at least one service account is required"))
	}
	return errors.Join(errs...)
}

// Reason classifies why a request was refused. The values are stable: they
// are metric attributes and log fields.
type Reason string

// The reasons a request can be refused for.
const (
	// ReasonMissing: no Authorization header.
	ReasonMissing Reason = "missing"
	// ReasonMalformed: not "Bearer <JWT>", or the JWT cannot be decoded.
	ReasonMalformed Reason = "malformed"
	// ReasonWrongAlgorithm: the JWT is not signed with RS256 (e.g. "none",
	// HS256, ES256).
	ReasonWrongAlgorithm Reason = "wrong_algorithm"
	// ReasonWrongAudience: the aud claim is not the configured audience.
	ReasonWrongAudience Reason = "wrong_audience"
	// ReasonExpired: the exp claim is in the past (or missing).
	ReasonExpired Reason = "expired"
	// ReasonBadSignature: the signature does not verify with any of
	// Google's current keys (unknown key id, other key, altered token).
	ReasonBadSignature Reason = "bad_signature"
	// ReasonWrongIssuer: the iss claim is not Google's.
	ReasonWrongIssuer Reason = "wrong_issuer"
	// ReasonUnverifiedEmail: email_verified is not the JSON value true.
	ReasonUnverifiedEmail Reason = "unverified_email"
	// ReasonEmailNotAllowed: the email is not one of ServiceAccounts.
	ReasonEmailNotAllowed Reason = "email_not_allowed"
	// ReasonCertsUnavailable: Google's signing keys could not be fetched,
	// so the token could not be checked. Not the caller's fault: answered
	// with 503 so that Pub/Sub and Scheduler retry.
	ReasonCertsUnavailable Reason = "certs_unavailable"
)

// Reasons returns every reason, in a fixed order.
func Reasons() []Reason {
	return []Reason{
		ReasonMissing, ReasonMalformed, ReasonWrongAlgorithm, ReasonWrongAudience, ReasonExpired,
		ReasonBadSignature, ReasonWrongIssuer, ReasonUnverifiedEmail, ReasonEmailNotAllowed,
		ReasonCertsUnavailable,
	}
}

// Error is a refused request. Its message never contains the token.
type Error struct {
	Reason Reason
	// Detail says what was wrong, for the log; claims in it are cut short.
	Detail string
	// Err is the validator's error, when there is one.
	Err error
}

// Error formats the refusal as "auth: reason: detail".
func (e *Error) Error() string {
	if e.Detail == "" {
		return "auth: " + string(e.Reason)
	}
	return "auth: " + string(e.Reason) + ": " + e.Detail
}

// Unwrap returns the validator's error.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of the *Error in err's chain, or "" if there
// is none.
func ReasonOf(err error) Reason {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ""
}

// Issuers Google ID tokens carry (both spellings occur).
var issuers = map[string]bool{"https://accounts.google.com": true, "accounts.google.com": true}

// maxTokenBytes bounds the token looked at. Google ID tokens are about 1 KB;
// anything far larger is not one and is refused before it is decoded.
const maxTokenBytes = 16 << 10

// Verifier checks ID tokens. It is safe for concurrent use.
type Verifier struct {
	validator *idtoken.Validator
	audience  string
	allowed   map[string]bool // lower-cased emails
	failures  metric.Int64Counter
}

// New validates cfg and returns a Verifier. opts configure the HTTP client
// that fetches Google's signing keys (tests pass option.WithHTTPClient with
// a transport that serves their own keys); by default it is an
// unauthenticated client.
func New(ctx context.Context, cfg Config, opts ...option.ClientOption) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	val, err := idtoken.NewValidator(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("auth: token validator: %w", err)
	}
	mp := cfg.Meter
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	failures, err := mp.Meter("github.com/snapsweep/snapsweep/auth").Int64Counter("snapsweep.auth.failures",
		metric.WithUnit("{request}"), metric.WithDescription("Requests refused by the OIDC check, by reason."))
	if err != nil {
		return nil, fmt.Errorf("auth: failure counter: %w", err)
	}
	v := &Verifier{validator: val, audience: strings.TrimSpace(cfg.Audience), allowed: map[string]bool{}, failures: failures}
	for _, sa := range cfg.ServiceAccounts {
		if sa = strings.TrimSpace(sa); sa != "" {
			v.allowed[strings.ToLower(sa)] = true
		}
	}
	return v, nil
}

// header is the part of a JWT header that matters here; it is decoded the
// way idtoken decodes it, so both see the same algorithm.
type header struct {
	Algorithm string `json:"alg"`
	Type      string `json:"typ"`
	KeyID     string `json:"kid"`
}

// Verify checks the request's bearer token and returns the caller's email.
// Every failure is an *Error whose Reason says why. Verify reads only the
// Authorization header, never the body.
func (v *Verifier) Verify(ctx context.Context, r *http.Request) (email string, err error) {
	email, e := v.verify(ctx, r)
	if e != nil {
		return "", e
	}
	return email, nil
}

func (v *Verifier) verify(ctx context.Context, r *http.Request) (string, *Error) {
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", &Error{Reason: ReasonMissing, Detail: "no Authorization header"}
	case 1:
	default:
		return "", &Error{Reason: ReasonMalformed, Detail: "more than one Authorization header"}
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	token = strings.TrimSpace(token)
	switch {
	case !strings.EqualFold(scheme, "Bearer"):
		return "", &Error{Reason: ReasonMalformed, Detail: "Authorization is not a Bearer token"}
	case token == "":
		return "", &Error{Reason: ReasonMalformed, Detail: "empty Bearer token"}
	case len(token) > maxTokenBytes:
		return "", &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf("token is %d bytes, more than %d", len(token), maxTokenBytes)}
	}

	// Decode what idtoken will decode, so that a token it cannot parse is
	// "malformed" here, and refuse every algorithm but RS256 before any key
	// is fetched: idtoken also accepts ES256 (IAP's keys), which no caller
	// of snapsweep uses.
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf("token has %d segments, want 3", len(parts))}
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", &Error{Reason: ReasonMalformed, Detail: "header is not base64url"}
	}
	var h header
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return "", &Error{Reason: ReasonMalformed, Detail: "header is not a JSON object"}
	}
	if h.Algorithm != "RS256" {
		return "", &Error{Reason: ReasonWrongAlgorithm, Detail: "alg " + short(h.Algorithm) + ", want RS256"}
	}
	claims, err := idtoken.ParsePayload(token)
	if err != nil {
		return "", &Error{Reason: ReasonMalformed, Detail: "payload is not a JSON object of ID token claims"}
	}
	if _, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return "", &Error{Reason: ReasonMalformed, Detail: "signature is not base64url"}
	}

	payload, err := v.validator.Validate(ctx, token, v.audience)
	if err != nil {
		return "", v.classify(claims, err)
	}
	// Signature, audience and expiry hold; the rest is ours to check.
	if !issuers[payload.Issuer] {
		return "", &Error{Reason: ReasonWrongIssuer, Detail: "iss " + short(payload.Issuer)}
	}
	email, _ := payload.Claims["email"].(string)
	if verified, ok := payload.Claims["email_verified"].(bool); !ok || !verified {
		return "", &Error{Reason: ReasonUnverifiedEmail, Detail: "email_verified is not true for " + short(email)}
	}
	if email == "" || !v.allowed[strings.ToLower(email)] {
		return "", &Error{Reason: ReasonEmailNotAllowed, Detail: "email " + short(email) + " is not an allowed service account"}
	}
	return email, nil
}

// classify names why idtoken refused a token. idtoken's errors are plain
// strings, so the claims (already decoded, not yet trusted) decide audience
// and expiry the way idtoken checks them, in its order; a failure to reach
// Google's keys is told apart from a bad signature; anything else counts as
// a bad signature, so that an unknown failure still refuses.
func (v *Verifier) classify(claims *idtoken.Payload, err error) *Error {
	switch {
	case claims.Audience != v.audience:
		return &Error{Reason: ReasonWrongAudience, Detail: "aud " + short(claims.Audience), Err: err}
	case time.Now().Unix() > claims.Expires:
		return &Error{Reason: ReasonExpired, Detail: "expired at " + time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339), Err: err}
	case errors.Is(err, rsa.ErrVerification), strings.Contains(err.Error(), "could not find matching cert"):
		return &Error{Reason: ReasonBadSignature, Detail: err.Error(), Err: err}
	case isFetchError(err):
		return &Error{Reason: ReasonCertsUnavailable, Detail: err.Error(), Err: err}
	}
	return &Error{Reason: ReasonBadSignature, Detail: err.Error(), Err: err}
}

// isFetchError reports whether err came from fetching Google's keys: a
// transport failure, a non-200 answer or an undecodable body.
func isFetchError(err error) bool {
	if _, ok := errors.AsType[*url.Error](err); ok {
		return true
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return true
	}
	return strings.Contains(err.Error(), "unable to retrieve cert") || errors.Is(err, context.DeadlineExceeded)
}

// Middleware refuses requests Verify does not accept, before next runs:
// 401 with WWW-Authenticate: Bearer and a short body (503 when Google's keys
// cannot be fetched). The body is never read and nothing else happens; the
// refusal is logged once at WARNING with its reason (never the token) and
// counted in snapsweep.auth.failures{reason}. Accepted requests pass through
// unchanged.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := v.verify(ctx, r); err != nil {
			reason := err.Reason
			v.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", string(reason))))
			level, code, body := slog.LevelWarn, http.StatusUnauthorized, "unauthorized"
			if reason == ReasonCertsUnavailable {
				level, code, body = slog.LevelError, http.StatusServiceUnavailable, "cannot verify the token now, retry later"
			} else {
				w.Header().Set("WWW-Authenticate", "Bearer")
			}
			telemetry.Logger(ctx).Log(ctx, level, "request refused by the OIDC check",
				"reason", reason, "detail", err.Detail, "method", r.Method, "path", r.URL.Path)
			// The body is left unread: the server closes the connection
			// if too much of it is pending.
			http.Error(w, body, code)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// short quotes an untrusted claim for a log detail, cut to a short prefix.
func short(s string) string { return events.Quote(s, 128) }
