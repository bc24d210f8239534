package broker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

const redacted = "[REDACTED]"

// TokenSource supplies the broker bearer token. Reload forces a re-read
// (the client calls it after a 401) and reports whether the token changed,
// so a rotated token file is picked up without a restart.
type TokenSource interface {
	Token() (string, error)
	Reload() (changed bool, err error)
}

// TokenError is a failure to obtain the bearer token (unreadable or empty
// token file); it never contains the token.
type TokenError struct{ Err error }

func (e *TokenError) Error() string { return e.Err.Error() }
func (e *TokenError) Unwrap() error { return e.Err }

// StaticToken is a token that never changes (e.g. from an environment
// variable).
func StaticToken(token string) TokenSource { return &staticToken{tok: strings.TrimSpace(token)} }

type staticToken struct{ tok string }

func (t *staticToken) Token() (string, error) {
	if t.tok == "" {
		return "", errors.New("auth-broker token is empty")
	}
	return t.tok, nil
}
func (t *staticToken) Reload() (bool, error)      { return false, nil }
func (t *staticToken) String() string             { return "StaticToken(" + redacted + ")" }
func (t *staticToken) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }

// FileToken reads the token from path (trimmed, like the broker's own token
// file) on first use and again on every Reload.
func FileToken(path string) TokenSource { return &fileToken{path: path} }

type fileToken struct {
	path string
	mu   sync.Mutex
	tok  string
}

func (t *fileToken) read() (string, error) {
	b, err := os.ReadFile(t.path)
	if err != nil {
		// The os error names the path and the cause, never the contents.
		return "", fmt.Errorf("reading auth-broker token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("auth-broker token file %s is empty", t.path)
	}
	return tok, nil
}

func (t *fileToken) Token() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	if t.tok == "" {
		t.tok, err = t.read() // "" on error: read again next time
	}
	return t.tok, err
}

func (t *fileToken) Reload() (bool, error) {
	tok, err := t.read()
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := tok != t.tok
	t.tok = tok
	return changed, nil
}

func (t *fileToken) String() string             { return "FileToken(" + t.path + ")" }
func (t *fileToken) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }
