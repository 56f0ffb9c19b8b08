"""The Docker Engine API on a unix socket (`sbx system service`), layer L6 beside ``cli/``.

A client of :mod:`sandbox.service` as the CLI is, never imported by it nor by any other sbx command: only
`sbx system service` imports this package. :mod:`server` is the HTTP server (the standard library's threading server
on a unix socket, with hijacked connections), :mod:`routes` the endpoints, :mod:`translate` Docker's create body
into run options, :mod:`streams` Docker's stream frames and the bridges to a monitor, :mod:`broker` the exits
that `wait` reports.
"""
