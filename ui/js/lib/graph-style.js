// How the service graph is drawn with cytoscape: its elements from the model
// (lib/graph-model.js), their style and the dagre layout (left to right).

import { LEVEL_COLORS, shortRate, formatPercent } from './mesh.js';
import { nodeLevel, edgeLevel, formatBytes, shownRate } from './graph-model.js';

const SHAPES = { workload: 'ellipse', app: 'round-rectangle', versionedApp: 'round-rectangle', service: 'round-triangle', unknown: 'diamond' };

export function elementsOf(model) {
  const nodes = [...model.nodes.values()].map((node) => ({
    group: 'nodes',
    data: { id: node.id, label: node.label, kind: node.kind, shape: SHAPES[node.kind] || 'ellipse', color: LEVEL_COLORS[nodeLevel(node)] },
  }));
  const edges = model.edges.map((edge) => {
    const level = edgeLevel(edge);
    const label = edge.protocol === 'tcp' ? formatBytes(shownRate(edge)).replace(' ', '') : `${shortRate(shownRate(edge))}${edge.errorRate > 0 ? `\n${formatPercent(edge.errorRate).replace(' ', '')} err` : ''}`;
    return {
      group: 'edges',
      data: {
        id: edge.id,
        source: edge.source,
        target: edge.target,
        label,
        color: LEVEL_COLORS[level],
        width: Math.min(7, 1.5 + Math.log10(1 + edge.rate) * 2),
        dashed: edge.protocol === 'tcp' ? 'dashed' : 'solid',
      },
    };
  });
  return [...nodes, ...edges];
}

export const STYLE = [
  {
    selector: 'node',
    style: {
      shape: 'data(shape)',
      width: 30,
      height: 30,
      'background-color': '#ffffff',
      'border-width': 3,
      'border-color': 'data(color)',
      label: 'data(label)',
      'font-size': 11,
      'font-family': 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
      color: '#1d2330',
      'text-valign': 'bottom',
      'text-halign': 'center',
      'text-margin-y': 6,
      'text-wrap': 'wrap',
      'text-max-width': 160,
      // A long workload name without spaces breaks anywhere instead of running over its
      // neighbours' labels.
      'text-overflow-wrap': 'anywhere',
      'text-background-color': '#ffffff',
      'text-background-opacity': 0.85,
      'text-background-padding': 2,
      'text-background-shape': 'roundrectangle',
    },
  },
  { selector: 'node[kind = "service"]', style: { 'background-color': '#eef2ff' } },
  { selector: 'node[kind = "unknown"]', style: { 'border-style': 'dashed', 'border-color': '#9aa3b2', 'background-color': '#f6f7f9' } },
  {
    selector: 'edge',
    style: {
      width: 'data(width)',
      'line-color': 'data(color)',
      'line-style': 'data(dashed)',
      'target-arrow-color': 'data(color)',
      'target-arrow-shape': 'triangle',
      'arrow-scale': 0.9,
      'curve-style': 'bezier',
      'control-point-step-size': 36,
      label: 'data(label)',
      'font-size': 10,
      'font-family': 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
      color: '#374151',
      'text-wrap': 'wrap',
      'text-background-color': '#ffffff',
      'text-background-opacity': 0.9,
      'text-background-padding': 2,
      'text-background-shape': 'roundrectangle',
    },
  },
  { selector: 'node:selected', style: { 'overlay-color': '#2563eb', 'overlay-opacity': 0.18, 'overlay-padding': 8, 'border-width': 4 } },
  { selector: 'edge:selected', style: { 'overlay-color': '#2563eb', 'overlay-opacity': 0.16, 'overlay-padding': 5, 'font-weight': 'bold' } },
  { selector: '.faded', style: { opacity: 0.22 } },
];

export const LAYOUT = { name: 'dagre', rankDir: 'LR', nodeSep: 46, rankSep: 150, edgeSep: 24, nodeDimensionsIncludeLabels: true, padding: 36, fit: true, animate: false };
