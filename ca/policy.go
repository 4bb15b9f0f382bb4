package ca

import (
	"context"
	"crypto"
	"errors"

	"go.step.sm/crypto/x509util"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// PolicyRoles returns the roles of the policy stored in st (nil when none
// is stored): issuance accepts them beside the built-in ones.
func PolicyRoles(ctx context.Context, st *store.Store) ([]pki.Role, error) {
	p, err := st.Policy(ctx)
	if errors.Is(err, store.ErrNoPolicy) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	roles := make([]pki.Role, len(p.Roles))
	for i, r := range p.Roles {
		roles[i] = pki.Role(r)
	}
	return roles, nil
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	return x509util.GenerateSubjectKeyID(pub)
}
