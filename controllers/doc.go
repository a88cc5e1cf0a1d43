// Package controllers holds one package per controller (apikey,
// accesskeypair, signingkey), the lifecycle the two kinds of key share
// (keylifecycle) and what it writes with (ownedsecret, keymetrics); Setup
// registers the controllers with a manager.
package controllers
