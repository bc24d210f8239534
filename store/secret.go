package store

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

const redacted = "[REDACTED]"

// Secret holds token material the exporter must send but never show. Every
// fmt verb and json.Marshal print "[REDACTED]"; only the client's request
// encoder reads the value.
type Secret string

func (Secret) String() string                 { return redacted }
func (Secret) GoString() string               { return `"` + redacted + `"` }
func (Secret) Format(f fmt.State, _ rune)     { _, _ = io.WriteString(f, redacted) }
func (Secret) MarshalJSON() ([]byte, error)   { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) reveal() string               { return string(s) }

// UploadCredential is a credential sent with POST /v1/credential. Type is
// TypeOAuth or TypeAPIKey; OAuth uses Access, Refresh, Expires and the
// identity fields, an API key uses Key and Source.
type UploadCredential struct {
	Type string

	Access        Secret
	Refresh       Secret
	Expires       time.Time
	Email         string
	AccountID     string
	ProjectID     string
	OrgID         string
	OrgName       string
	EnterpriseURL string
	APIEndpoint   string
	AuthorizedAt  time.Time
	// Extra are provider-specific OAuth fields (e.g. an MCP clientSecret);
	// all are treated as secrets.
	Extra map[string]Secret

	Key    Secret
	Source string
}

// secrets lists the values a broker error message must never echo back.
func (u *UploadCredential) secrets() []string {
	out := []string{u.Access.reveal(), u.Refresh.reveal(), u.Key.reveal()}
	for _, v := range u.Extra {
		out = append(out, v.reveal())
	}
	return out
}

// wireBody builds the request body; this is the one place secrets are
// revealed, and the result goes straight to the request encoder.
func (u *UploadCredential) wireBody() (map[string]any, error) {
	switch u.Type {
	case TypeOAuth:
		m := make(map[string]any, 8+len(u.Extra))
		for k, v := range u.Extra {
			m[k] = v.reveal()
		}
		m["type"] = TypeOAuth
		m["access"] = u.Access.reveal()
		m["refresh"] = u.Refresh.reveal()
		m["expires"] = u.Expires.UnixMilli()
		setIf := func(k, v string) {
			if v != "" {
				m[k] = v
			}
		}
		setIf("email", u.Email)
		setIf("accountId", u.AccountID)
		setIf("projectId", u.ProjectID)
		setIf("orgId", u.OrgID)
		setIf("orgName", u.OrgName)
		setIf("enterpriseUrl", u.EnterpriseURL)
		setIf("apiEndpoint", u.APIEndpoint)
		if !u.AuthorizedAt.IsZero() {
			m["authorizedAt"] = u.AuthorizedAt.UnixMilli()
		}
		return m, nil
	case TypeAPIKey:
		m := map[string]any{"type": TypeAPIKey, "key": u.Key.reveal()}
		if u.Source != "" {
			m["source"] = u.Source
		}
		return m, nil
	default:
		return nil, fmt.Errorf("upload: unknown credential type %q", u.Type)
	}
}

var _ json.Marshaler = Secret("")
