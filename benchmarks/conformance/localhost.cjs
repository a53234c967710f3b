// Preloaded into the suite's origin: a bare server.listen(port) binds 127.0.0.1 only.
const net = require('net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (args.length === 1 && (typeof args[0] === 'number' || typeof args[0] === 'string')) {
    args.push('127.0.0.1')
  }
  return listen.apply(this, args)
}
