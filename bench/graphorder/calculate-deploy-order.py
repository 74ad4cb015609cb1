#!/usr/bin/env python3
# The scenario's deploy-order script (scripts/calculate-deploy-order.py), kept
# as it was written: a plain Kahn's loop over the dependency-graph JSON. The
# only change: it reads the file named on its command line instead of
# tools/dependency-graph.json, so the benchmark can hand it the same graph it
# hands flotilla.
import json
import sys
from collections import defaultdict, deque

def calculate_deployment_order(dependency_graph):
    """使用拓撲排序計算部署順序"""
    in_degree = defaultdict(int)
    graph = defaultdict(list)

    # 構建圖
    for service, info in dependency_graph['services'].items():
        for dep in info['dependencies']:
            graph[dep].append(service)
            in_degree[service] += 1

    # Kahn's algorithm
    queue = deque([s for s in dependency_graph['services']
                   if in_degree[s] == 0])
    order = []

    while queue:
        current = queue.popleft()
        order.append(current)

        for neighbor in graph[current]:
            in_degree[neighbor] -= 1
            if in_degree[neighbor] == 0:
                queue.append(neighbor)

    if len(order) != len(dependency_graph['services']):
        raise Exception("Circular dependency detected!")

    return order

# 使用範例
with open(sys.argv[1] if len(sys.argv) > 1 else 'tools/dependency-graph.json') as f:
    graph = json.load(f)

order = calculate_deployment_order(graph)
print("Deployment Order:")
for i, service in enumerate(order, 1):
    print(f"{i}. {service}")
