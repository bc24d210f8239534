package identity

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	h1, _ := New(Hashed, []byte("k1"))
	h2, _ := New(Hashed, []byte("k2"))
	raw, _ := New(Raw, nil)
	empty, _ := New(Empty, nil)
	const email = "a@example.com"
	if got := raw.Render(email); got != email {
		t.Fatalf("raw: %q", got)
	}
	if got := empty.Render(email); got != "" {
		t.Fatalf("empty: %q", got)
	}
	a, b := h1.Render(email), h2.Render(email)
	if len(a) != 16 || a == b || strings.Contains(a, "example") {
		t.Fatalf("hashed: %q %q", a, b)
	}
	if a != h1.Render(email) {
		t.Fatal("hash not stable for one key")
	}
	for _, r := range []*Redactor{raw, h1, empty} {
		if r.Render("") != "" {
			t.Fatalf("%s: empty input must stay empty", r.Mode())
		}
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Hashed, nil); err == nil {
		t.Fatal("hashed without key accepted")
	}
	if _, err := New("plain", nil); err == nil {
		t.Fatal("unknown mode accepted")
	}
}
