package sign

import "errors"

var (
	// ErrKeyPassword means the private key could not be decrypted with the
	// password given.
	ErrKeyPassword = errors.New("wrong password for the private key")
	// ErrInvalidKey means a key file is not a key in a supported format.
	ErrInvalidKey = errors.New("invalid key")
)
