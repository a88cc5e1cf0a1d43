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
)
