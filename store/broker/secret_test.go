package broker

import (
	"fmt"
	"path/filepath"
	"testing"
)

var verbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%T %v", "%10.3v", "%d"}

func assertRedactedEverywhere(t *testing.T, what string, v any) {
	t.Helper()
	for _, verb := range verbs {
		assertNoCanary(t, what+" "+verb, fmt.Sprintf(verb, v))
	}
	if s, ok := v.(fmt.Stringer); ok {
		assertNoCanary(t, what+" String()", s.String())
	}
	if g, ok := v.(fmt.GoStringer); ok {
		assertNoCanary(t, what+" GoString()", g.GoString())
	}
}

// TestSecretsNeverPrinted: the token sources and the client print their
// kind and path, never the bearer token, whatever the fmt verb.
func TestSecretsNeverPrinted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, canaryToken)
	ft := FileToken(path)
	if tok, err := ft.Token(); err != nil || tok != canaryToken {
		t.Fatal(tok, err)
	}
	c := newTestClient(t, "http://127.0.0.1:1", ClientOptions{Token: ft})
	values := map[string]any{
		"StaticToken":             StaticToken(canaryToken),
		"FileToken":               ft,
		"Client":                  c,
		"Client value":            *c,
		"ClientOptions":           ClientOptions{URL: "http://x", Token: StaticToken(canaryToken)},
		"struct with token field": struct{ T TokenSource }{StaticToken(canaryToken)},
	}
	for name, v := range values {
		assertRedactedEverywhere(t, name, v)
	}
}
