package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// request sends method to ts's path with the given headers and body and
// returns the response, its body read.
func request(t *testing.T, ts *testServer, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// preflight is a browser's preflight of a JSON POST with an API key.
func preflight(origin string) map[string]string {
	return map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization,content-type"}
}

// TestCORSOff: without AllowedOrigins the server sends no CORS headers and
// OPTIONS is a 405, as before the option.
func TestCORSOff(t *testing.T) {
	ts := startServer(t, serverConfig{})
	resp, body := request(t, ts, "OPTIONS", "/v1/chat/completions", "", preflight("http://app.example"))
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("OPTIONS: %d %s, want 405", resp.StatusCode, body)
	}
	resp, body = request(t, ts, "POST", "/v1/completions", `{"prompt": "Once", "max_tokens": 2}`, map[string]string{"Origin": "http://app.example"})
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("POST answered %s without AllowedOrigins", k)
		}
	}
}

// TestCORS: with AllowedOrigins a preflight of an API route is a 204
// allowing the origin, the route's method and the headers asked for, with
// no API key (browsers send none); responses, streams included, carry
// Access-Control-Allow-Origin for an allowed origin only.
func TestCORS(t *testing.T) {
	ts := startServer(t, serverConfig{Options: Options{AllowedOrigins: []string{"http://app.example", "https://ui.example:8443"}, APIKeys: []string{"k"}}})
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/models", "/tokenize"} {
		resp, body := request(t, ts, "OPTIONS", path, "", preflight("https://ui.example:8443"))
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://ui.example:8443" ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "authorization") ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), ts.Server.methods[path][0]) {
			t.Errorf("OPTIONS %s: %d %v %s, want 204 allowing the origin, %s and authorization", path, resp.StatusCode, h, body, ts.Server.methods[path][0])
		}
		if !strings.Contains(h.Get("Vary"), "Origin") {
			t.Errorf("OPTIONS %s: Vary %q, want Origin", path, h.Get("Vary"))
		}
	}
	// An origin not listed gets no CORS headers.
	resp, _ := request(t, ts, "OPTIONS", "/v1/completions", "", preflight("http://evil.example"))
	if resp.StatusCode == http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("OPTIONS from an origin not allowed: %d %v", resp.StatusCode, resp.Header)
	}
	auth := map[string]string{"Origin": "http://app.example", "Authorization": "Bearer k", "Content-Type": "application/json"}
	resp, body := request(t, ts, "POST", "/v1/completions", `{"prompt": "Once", "max_tokens": 2}`, auth)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Errorf("POST: %d %v %s, want 200 allowing the origin", resp.StatusCode, resp.Header, body)
	}
	resp, body = request(t, ts, "POST", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": true}`, auth)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" || !strings.Contains(body, "data: [DONE]") {
		t.Errorf("stream: %d %v %s, want 200 allowing the origin", resp.StatusCode, resp.Header, body)
	}
	// A browser must read a 401 too, to tell the user why.
	resp, _ = request(t, ts, "GET", "/v1/models", "", map[string]string{"Origin": "http://app.example"})
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Errorf("401: %d %v, want it to allow the origin", resp.StatusCode, resp.Header)
	}
	resp, _ = request(t, ts, "GET", "/v1/models", "", map[string]string{"Origin": "http://evil.example", "Authorization": "Bearer k"})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("origin not allowed: %d %v, want 200 without Access-Control-Allow-Origin", resp.StatusCode, resp.Header)
	}
	// OPTIONS elsewhere than the API is still a 405.
	if resp, _ := request(t, ts, "OPTIONS", "/health", "", preflight("http://app.example")); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("OPTIONS /health: %d, want 405", resp.StatusCode)
	}
}

// TestCORSAnyOrigin: "*" allows every origin with the literal "*".
func TestCORSAnyOrigin(t *testing.T) {
	ts := startServer(t, serverConfig{Options: Options{AllowedOrigins: []string{"*"}}})
	resp, _ := request(t, ts, "OPTIONS", "/v1/completions", "", preflight("http://anything.example"))
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("OPTIONS: %d %v, want 204 allowing *", resp.StatusCode, resp.Header)
	}
	resp, body := request(t, ts, "POST", "/v1/completions", `{"prompt": "Once", "max_tokens": 2}`, map[string]string{"Origin": "http://anything.example"})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("POST: %d %v %s, want 200 allowing *", resp.StatusCode, resp.Header, body)
	}
}
