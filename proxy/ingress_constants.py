"""Names the Ingress API and ingress-nginx use (annotations, labels, ports), kept in one place."""

from __future__ import annotations

# Ingress v1 path types (kubernetes/api networking/v1 types.go).
EXACT, PREFIX, IMPLEMENTATION_SPECIFIC = "Exact", "Prefix", "ImplementationSpecific"

# Class selection (kubernetes/api networking/v1 annotations; the Ingress concept page).
CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # deprecated, still honoured
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"

# ingress-nginx: the controller value its IngressClass carries (--controller-class), the
# class name / annotation value it claims by default (--ingress-class), and the labels the
# official manifests and Helm chart put on the controller pods and Service.
NGINX_CONTROLLER = "k8s.io/ingress-nginx"
NGINX_CLASS = "nginx"
NGINX_NAME_LABEL = ("app.kubernetes.io/name", "ingress-nginx")
NGINX_COMPONENT_LABEL = ("app.kubernetes.io/component", "controller")
NGINX_NAMESPACE = "ingress-nginx"
NGINX_NAME = "ingress-nginx-controller"
HTTP_PORT, HTTPS_PORT = 80, 443  # nginx listens here (--http-port / --https-port defaults)

# ingress-nginx annotations netsim reads (docs/user-guide/nginx-configuration/annotations.md).
NGINX_ANNOTATION = "nginx.ingress.kubernetes.io/"
SSL_REDIRECT = NGINX_ANNOTATION + "ssl-redirect"  # ConfigMap default "true"
FORCE_SSL_REDIRECT = NGINX_ANNOTATION + "force-ssl-redirect"
USE_REGEX = NGINX_ANNOTATION + "use-regex"
REWRITE_TARGET = NGINX_ANNOTATION + "rewrite-target"
SERVICE_UPSTREAM = NGINX_ANNOTATION + "service-upstream"
CANARY = NGINX_ANNOTATION + "canary"

# ingress-nginx's http-redirect-code default (HTTP -> HTTPS), and nginx's own answer when a
# prefix location ending in "/" is asked for without the slash (ngx_http_core_module location).
SSL_REDIRECT_CODE = 308
TRAILING_SLASH_REDIRECT_CODE = 301

# Where netsim puts the controller it emulates when the manifests hold none: the names the
# official deploy manifests use, and the first NodePorts tried for its NodePort front.
EMULATED_NODE_PORTS = (30080, 30443)
NODE_PORT_RANGE = (30000, 32767)  # kube-apiserver --service-node-port-range default
