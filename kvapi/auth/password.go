package auth

import (
	"encoding/base64"

	"golang.org/x/crypto/bcrypt"
)

// hashPassword returns the bcrypt hash of password at cost, base64-encoded.
// bcrypt refuses passwords longer than 72 bytes (bcrypt.ErrPasswordTooLong),
// as etcd's does.
func hashPassword(password string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h), nil
}
