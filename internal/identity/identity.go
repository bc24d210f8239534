// Package identity decides how credential identities (emails, account and
// org ids: personal data) are shown in metric labels and on pages.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Mode is how identity values are rendered.
type Mode string

const (
	Raw    Mode = "raw"    // verbatim
	Hashed Mode = "hashed" // keyed HMAC-SHA256, first 16 hex digits
	Empty  Mode = "empty"  // always ""
)

// Modes lists the accepted flag values.
var Modes = []string{string(Raw), string(Hashed), string(Empty)}

// Redactor renders identity values for one Mode. A plain hash of a short
// email can be brute-forced from a dictionary, so hashing is keyed; the same
// key yields the same label across restarts, which keeps series continuous.
type Redactor struct {
	mode Mode
	key  []byte
}

// New returns a Redactor. Hashed mode requires a non-empty key.
func New(mode Mode, key []byte) (*Redactor, error) {
	switch mode {
	case Raw, Empty:
		return &Redactor{mode: mode}, nil
	case Hashed:
		if len(key) == 0 {
			return nil, fmt.Errorf("identity mode %q needs a hash key", mode)
		}
		return &Redactor{mode: mode, key: append([]byte(nil), key...)}, nil
	}
	return nil, fmt.Errorf("unknown identity mode %q (want raw, hashed or empty)", mode)
}

// Mode reports the configured mode.
func (r *Redactor) Mode() Mode { return r.mode }

// Render returns the label value for v. Empty input stays empty so that
// "absent" is distinguishable from a hash in every mode.
func (r *Redactor) Render(v string) string {
	if v == "" || r.mode == Empty {
		return ""
	}
	if r.mode == Raw {
		return v
	}
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))[:16]
}
