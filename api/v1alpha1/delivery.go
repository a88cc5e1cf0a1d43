package v1alpha1

// What Keyward writes into a delivery Secret (spec.secretName): a contract
// with every workload and tool that reads one, so it lives with the API.
const (
	// DeliveryDataKey holds an APIKey's plaintext key; it is also the
	// default data key of spec.importFrom.
	DeliveryDataKey = "key"
	// DeliveryDataAccessKeyID and DeliveryDataSecretKey hold an
	// AccessKeyPair's access key id and secret key.
	DeliveryDataAccessKeyID = "accessKeyID"
	DeliveryDataSecretKey   = "secretKey"
	// AnnotationDeliveredKeyID names the key version a delivery Secret
	// holds (its public id).
	AnnotationDeliveredKeyID = "keys.keyward.dev/key-id"
	// AnnotationAgeRecipients lists, comma-separated, the age recipients the
	// delivered version was written for (empty: none). A version adopted
	// after a crash is encrypted to no other (issue 12, attack 1).
	// Recipients are public keys; spec.delivery bounds the list.
	AnnotationAgeRecipients = "keys.keyward.dev/age-recipients"
)
