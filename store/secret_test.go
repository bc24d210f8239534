package store

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"
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

func TestSecretsNeverPrinted(t *testing.T) {
	up := UploadCredential{Type: TypeOAuth, Access: canaryAccess, Refresh: canaryAccess, Key: canaryKey,
		Email: "a@x", Expires: time.UnixMilli(1), Extra: map[string]Secret{"clientSecret": canaryExtra}}
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, canaryToken)
	ft := FileToken(path)
	if tok, err := ft.Token(); err != nil || tok != canaryToken {
		t.Fatal(tok, err)
	}
	c := newTestClient(t, "http://127.0.0.1:1", ClientOptions{Token: ft})
	s := newStore(Options{Client: c})
	t.Cleanup(s.Close)
	values := map[string]any{
		"Secret":                  Secret(canaryAccess),
		"*Secret":                 ptr(Secret(canaryAccess)),
		"[]Secret":                []Secret{canaryAccess, canaryKey},
		"map[string]Secret":       map[string]Secret{"k": canaryExtra},
		"UploadCredential":        up,
		"*UploadCredential":       &up,
		"[]UploadCredential":      []UploadCredential{up},
		"StaticToken":             StaticToken(canaryToken),
		"FileToken":               ft,
		"Client":                  c,
		"Client value":            *c,
		"Store":                   s,
		"ClientOptions":           ClientOptions{URL: "http://x", Token: StaticToken(canaryToken)},
		"Options":                 Options{Client: c},
		"struct with UploadCred":  struct{ U UploadCredential }{up},
		"struct with token field": struct{ T TokenSource }{StaticToken(canaryToken)},
	}
	for name, v := range values {
		assertRedactedEverywhere(t, name, v)
	}
	// JSON of the exported type is redacted too; only the request body
	// builder sees the values.
	b, err := json.Marshal(up)
	if err != nil {
		t.Fatal(err)
	}
	assertNoCanary(t, "json.Marshal(UploadCredential)", string(b))
	body, err := up.wireBody()
	if err != nil || body["access"] != canaryAccess || body["clientSecret"] != canaryExtra || body["refresh"] != canaryAccess {
		t.Fatalf("request body lost the values: %v", err)
	}
	if _, ok := body["key"]; ok {
		t.Fatal("an OAuth upload must not carry an API key field")
	}
	kb, _ := (&UploadCredential{Type: TypeAPIKey, Key: canaryKey, Access: canaryAccess}).wireBody()
	if kb["key"] != canaryKey || kb["access"] != nil || len(kb) != 2 {
		t.Fatalf("api key body has %d fields", len(kb))
	}
}

func ptr[T any](v T) *T { return &v }
