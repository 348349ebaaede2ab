package flk

// DecodeSignedFields reads the eight signed fields from a JSON object, which
// may be a whole PCS or just those fields; every other key is ignored.
//
// It exists for signing tools (the flk-sdk CLI, cross-language tests) that
// hold only the signed subset, so it checks no more than signing needs:
// pcs_id, merkle_root, shard_id must be strings, epoch an integer, and D_hat,
// coh_star, budget numbers, all present; r may be absent or null and then
// signs as 0.0. Type rules and errors are those of DecodePCS.
func DecodeSignedFields(data []byte) (SignedFields, error) {
	obj, err := splitObject(data)
	if err != nil {
		return SignedFields{}, err
	}
	var f SignedFields
	steps := []func() error{
		func() (err error) { f.PcsID, err = required(obj, "pcs_id", parseString); return },
		func() (err error) { f.MerkleRoot, err = required(obj, "merkle_root", parseString); return },
		func() (err error) { f.Epoch, err = required(obj, "epoch", parseInt); return },
		func() (err error) { f.ShardID, err = required(obj, "shard_id", parseString); return },
		func() (err error) { f.DHat, err = required(obj, "D_hat", parseFloat); return },
		func() (err error) { f.CohStar, err = required(obj, "coh_star", parseFloat); return },
		func() (err error) { f.R, err = optionalOr(obj, "r", parseFloat); return },
		func() (err error) { f.Budget, err = required(obj, "budget", parseFloat); return },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return SignedFields{}, err
		}
	}
	return f, nil
}
