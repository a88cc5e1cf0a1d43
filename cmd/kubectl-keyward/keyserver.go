package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keyward/keyward/internal/keymaterial"
)

// maxResponse bounds what is read from the key server.
const maxResponse = 1 << 20

// maxSecretInput bounds a secret key or API key read from stdin; a token
// (which verify also accepts) is the longest.
const maxSecretInput = 16 << 10

// serverResponse is one answer of the key server.
type serverResponse struct {
	status int
	body   []byte
}

// describeError names a failed answer without echoing anything sent.
func (r serverResponse) describeError() string {
	var e wire.ErrorBody
	if json.Unmarshal(r.body, &e) == nil && (e.Error != "" || e.Message != "") {
		return fmt.Sprintf("HTTP %d: %s: %s", r.status, e.Error, e.Message)
	}
	return fmt.Sprintf("HTTP %d %s", r.status, http.StatusText(r.status))
}

// post sends a JSON body to the key server, with HTTP Basic when user is set.
func (a *app) post(ctx context.Context, path string, body any, user, password string, timeout time.Duration) (serverResponse, error) {
	base, err := url.Parse(strings.TrimSuffix(a.server, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return serverResponse{}, usagef("", "--server must be an http:// or https:// URL, got %q", a.server)
	}
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return serverResponse{}, err
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+path, rd)
	if err != nil {
		return serverResponse{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kubectl-keyward")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	hc, err := a.httpClient()
	if err != nil {
		return serverResponse{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		// url.Error carries the URL and the cause, never the body or headers.
		return serverResponse{}, fmt.Errorf("calling the key server at %s: %w", base.Redacted(), unwrapURLError(err))
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return serverResponse{}, fmt.Errorf("reading the key server's answer: %w", err)
	}
	return serverResponse{status: resp.StatusCode, body: raw}, nil
}

// httpClient trusts --server-ca when given, else the system's roots.
func (a *app) httpClient() (*http.Client, error) {
	if a.serverCA == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(a.serverCA)
	if err != nil {
		return nil, fmt.Errorf("reading --server-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--server-ca %s holds no PEM certificate", a.serverCA)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readSecret reads one line from stdin: a key is never a flag value,
// which would land in shell history and the process list.
func readSecret(in io.Reader, what string) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(in, maxSecretInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the %s from stdin: %w", what, err)
	}
	line = strings.TrimSpace(line)
	if line == "" {
		return "", usagef("", "no %s on stdin", what)
	}
	return line, nil
}

// token exchanges an access key pair for a signed token.
func (a *app) token(args []string) error {
	var accessKey, fromSecret, lifetime, output string
	var fromStdin bool
	var timeout time.Duration
	fs := a.flagSet("token")
	fs.StringVar(&accessKey, "access-key", "", "The access key id (default with --secret-key-secret: the Secret's accessKeyID)")
	fs.BoolVar(&fromStdin, "secret-key-from-stdin", false, "Read the secret key from the first line of stdin")
	fs.StringVar(&fromSecret, "secret-key-secret", "", "Read the secret key from this Secret of the namespace (data key \"secretKey\"), as an AccessKeyPair delivers it")
	fs.StringVar(&lifetime, "lifetime", "", "Lifetime of the token, e.g. 24h (default: the pair's)")
	fs.StringVarP(&output, "output", "o", "", "json prints the whole answer (token, tokenType, expiresAt, expiresIn)")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for the key server")
	args, err := a.parse("token", fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(args) > 0:
		return usagef("token", "token takes no arguments (the secret key is never a flag or argument: use --secret-key-from-stdin)")
	case fromStdin == (fromSecret != ""):
		return usagef("token", "give exactly one of --secret-key-from-stdin and --secret-key-secret NAME")
	case accessKey == "" && fromSecret == "":
		return usagef("token", "--access-key is required")
	case output != "" && output != "json":
		return usagef("token", "-o must be json, got %q", output)
	}
	if lifetime != "" {
		if d, err := time.ParseDuration(lifetime); err != nil || d <= 0 {
			return usagef("token", "--lifetime must be a positive duration such as 24h, got %q", lifetime)
		}
	}

	var secretKey string
	if fromStdin {
		if secretKey, err = readSecret(a.s.In, "secret key"); err != nil {
			var ue *usageError
			if errors.As(err, &ue) {
				ue.cmd = "token"
			}
			return err
		}
	} else {
		ak, sk, err := a.pairFromSecret(fromSecret)
		if err != nil {
			return err
		}
		if accessKey == "" {
			accessKey = ak
		}
		secretKey = sk
	}

	var body any
	if lifetime != "" {
		body = map[string]string{"lifetime": lifetime}
	}
	resp, err := a.post(a.ctx, "/v1/tokens", body, accessKey, secretKey, timeout)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return fmt.Errorf("the key server refused the exchange (%s)", resp.describeError())
	}
	var tok wire.TokenResponse
	if err := json.Unmarshal(resp.body, &tok); err != nil || tok.Token == "" {
		return errors.New("the key server's answer holds no token")
	}
	if output == "json" {
		var v any
		_ = json.Unmarshal(resp.body, &v)
		return printMap(a.s.Out, v, "json")
	}
	_, err = fmt.Fprintln(a.s.Out, tok.Token)
	return err
}

// pairFromSecret reads an AccessKeyPair's delivery Secret.
func (a *app) pairFromSecret(name string) (string, string, error) {
	c, err := a.client()
	if err != nil {
		return "", "", err
	}
	sec := &corev1.Secret{}
	if err := c.Get(a.ctx, types.NamespacedName{Namespace: c.namespace, Name: name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", fmt.Errorf("Secret %q not found in namespace %q", name, c.namespace)
		}
		return "", "", fmt.Errorf("reading Secret %q: %w", name, err)
	}
	sk := strings.TrimSpace(string(sec.Data[kw.DeliveryDataSecretKey]))
	if sk == "" {
		return "", "", fmt.Errorf("Secret %q has no %q entry", name, kw.DeliveryDataSecretKey)
	}
	return strings.TrimSpace(string(sec.Data[kw.DeliveryDataAccessKeyID])), sk, nil
}

// verify checks a key read from stdin at the key server.
func (a *app) verify(args []string) error {
	var scopes []string
	var output string
	var timeout time.Duration
	fs := a.flagSet("verify")
	fs.StringArrayVar(&scopes, "scope", nil, "Scope the key must grant (repeatable)")
	fs.StringVarP(&output, "output", "o", "", "json prints the key server's answer")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for the key server")
	args, err := a.parse("verify", fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(args) > 0:
		return usagef("verify", "verify reads the key from stdin and takes no arguments")
	case output != "" && output != "json":
		return usagef("verify", "-o must be json, got %q", output)
	}
	key, err := readSecret(a.s.In, "key")
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			ue.cmd = "verify"
		}
		return err
	}
	body := map[string]any{"key": key}
	if len(scopes) > 0 {
		body["scopes"] = scopes
	}
	resp, err := a.post(a.ctx, "/v1/verify", body, "", "", timeout)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return fmt.Errorf("the key server did not answer the verification (%s)", resp.describeError())
	}
	var res wire.VerifyResponse
	if err := json.Unmarshal(resp.body, &res); err != nil {
		return errors.New("the key server's answer is not a verify response")
	}
	if output == "json" {
		var v any
		_ = json.Unmarshal(resp.body, &v)
		if err := printMap(a.s.Out, v, "json"); err != nil {
			return err
		}
	} else {
		printVerify(a.s.Out, key, res)
	}
	if !res.Valid {
		return errSilent
	}
	return nil
}

func printVerify(w io.Writer, key string, res wire.VerifyResponse) {
	if !res.Valid {
		fmt.Fprintf(w, "invalid: %s\n", res.Code)
		if res.Code == "INSUFFICIENT_SCOPE" {
			fmt.Fprintf(w, "  the key (subject %s) lacks a required scope; it grants: %s\n", res.Subject, orNone(strings.Join(res.Scopes, " ")))
		}
		return
	}
	fmt.Fprintln(w, "valid")
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-10s %s\n", k+":", v)
		}
	}
	line("subject", res.Subject)
	line("namespace", res.Namespace)
	line("key id", res.KeyID)
	if k, err := keymaterial.Parse(key); err == nil {
		line("hint", keymaterial.Hint(k))
	}
	line("groups", strings.Join(res.Groups, ", "))
	line("scopes", strings.Join(res.Scopes, " "))
	line("access", res.Access)
	if res.ExpiresAt != nil {
		line("expires", res.ExpiresAt.UTC().Format(time.RFC3339))
	} else {
		line("expires", "never")
	}
}
