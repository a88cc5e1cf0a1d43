// Package controllers holds one package per controller (apikey,
// accesskeypair, signingkey); Setup registers those enabled with a manager.
package controllers
