package meshkv

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/meshkv/meshkv/internal/listen"
	"github.com/meshkv/meshkv/kvapi/auth"
)

// Client access: listeners, TLS and authentication.

// ErrNoClientTLS is wrapped by Validate's error for an https:// or unixs://
// client URL without Config.ClientTLS.
var ErrNoClientTLS = errors.New("TLS key/cert (--cert-file, --key-file) must be provided for client url with HTTPS scheme")

// validateClientAccess checks the client URLs and the TLS and auth options.
func (c Config) validateClientAccess() error {
	for _, s := range c.ListenClientURLs {
		u, err := listen.ParseURL(s)
		if err != nil {
			return err
		}
		if u.Secure() && c.ClientTLS == nil {
			return fmt.Errorf("%w %s", ErrNoClientTLS, s)
		}
	}
	for _, s := range c.AdvertiseClientURLs {
		u, err := url.Parse(s)
		if err != nil || (u.Host == "" && !((u.Scheme == "unix" || u.Scheme == "unixs") && u.Path != "")) {
			return fmt.Errorf("advertise client URL %q is not a URL with a host (or a unix socket path)", s)
		}
	}
	if c.AuthTokenTTL < 0 {
		return fmt.Errorf("negative auth token TTL %v", c.AuthTokenTTL)
	}
	return c.authConfig().Validate()
}

// authConfig returns the auth store's options.
func (c Config) authConfig() auth.Config {
	return auth.Config{
		TokenOptions:   c.AuthToken,
		SimpleTokenTTL: c.AuthTokenTTL,
		BcryptCost:     c.BcryptCost,
		Logger:         c.Logger,
	}
}
